# One image for the API, the worker and the SMTP server (see docker-compose.yml).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends chromium espeak-ng make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv
COPY . .
RUN pip install --no-cache-dir -e .
ENV CHROMIUM_PATH=/usr/bin/chromium
CMD ["python", "-m", "app", "serve"]
