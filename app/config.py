"""Settings read once from the environment.

Every knob an operator may turn lives here, with the default a developer
machine needs. Nothing else in the code reads ``os.environ``.

DATABASE_URL and REDIS_URL, when not in the environment, come from the file
scripts/ensure-services.sh writes (``.data/services.env``), so a CLI command run
by hand finds the same servers `make run` uses.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

# The repository root: the parent of the `app` package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/pal"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (an ``export`` prefix and one pair of quotes allowed); others ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.fullmatch(key):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def services_file() -> Path:
    """Where scripts/ensure-services.sh records the PostgreSQL and Redis it chose."""
    if os.environ.get("PAL_SERVICES_FILE"):
        return Path(os.environ["PAL_SERVICES_FILE"])
    return PROJECT_ROOT / (os.environ.get("PAL_DATA_DIR") or ".data") / "services.env"


def _service_url(name: str, default: str) -> str:
    """The environment's value, else the one `make run` recorded, else the loopback default."""
    if os.environ.get(name):
        return os.environ[name]
    try:
        recorded = parse_env_file(services_file().read_text())
    except (OSError, UnicodeDecodeError):
        recorded = {}
    return recorded.get(name) or default


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _list(name: str, default: str = "") -> tuple[str, ...]:
    raw = os.environ.get(name, default)
    return tuple(item.strip().lower() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    database_url: str = field(
        default_factory=lambda: _service_url("DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    redis_url: str = field(default_factory=lambda: _service_url("REDIS_URL", DEFAULT_REDIS_URL))
    log_level: str = field(default_factory=lambda: os.environ.get("LOG_LEVEL", "INFO").upper())
    email_domain: str = field(
        default_factory=lambda: os.environ.get("PAL_EMAIL_DOMAIN", "tavusinvite.com").lower()
    )
    api_host: str = field(default_factory=lambda: os.environ.get("API_HOST", "127.0.0.1"))
    api_port: int = field(default_factory=lambda: _int("API_PORT", 8000))
    max_body_bytes: int = field(default_factory=lambda: _int("MAX_BODY_BYTES", 1_000_000))
    # Deepest [ / { nesting any JSON request body may have (checked before it is parsed).
    max_json_depth: int = field(default_factory=lambda: _int("MAX_JSON_DEPTH", 32))
    # Slow clients (python -m app serve): time to send the request line and headers, time to
    # send the body (extended by bytes received / the minimum rate), idle keep-alive, connections.
    http_header_timeout: float = field(default_factory=lambda: _float("HTTP_HEADER_TIMEOUT_SECONDS", 10))
    http_body_timeout: float = field(default_factory=lambda: _float("HTTP_BODY_TIMEOUT_SECONDS", 30))
    http_body_min_rate: int = field(default_factory=lambda: _int("HTTP_BODY_MIN_BYTES_PER_SECOND", 65536))
    http_keep_alive: float = field(default_factory=lambda: _float("HTTP_KEEP_ALIVE_SECONDS", 5))
    http_max_connections: int = field(default_factory=lambda: _int("HTTP_MAX_CONNECTIONS", 1000))
    # Quotas per account (a request over one is a 403 QUOTA_EXCEEDED naming it).
    max_pals_per_account: int = field(default_factory=lambda: _int("MAX_PALS_PER_ACCOUNT", 100))
    max_faces_per_account: int = field(default_factory=lambda: _int("MAX_FACES_PER_ACCOUNT", 20))
    max_face_media_bytes_per_account: int = field(
        default_factory=lambda: _int("MAX_FACE_MEDIA_BYTES_PER_ACCOUNT", 256 * 1024 * 1024)
    )
    max_layers_bytes: int = field(default_factory=lambda: _int("MAX_LAYERS_BYTES", 65536))
    # Inbound mail
    smtp_host: str = field(default_factory=lambda: os.environ.get("SMTP_HOST", "127.0.0.1"))
    smtp_port: int = field(default_factory=lambda: _int("SMTP_PORT", 2525))
    max_message_bytes: int = field(
        default_factory=lambda: _int("MAX_MESSAGE_BYTES", 10 * 1024 * 1024)
    )
    inbound_webhook_secret: str = field(
        default_factory=lambda: os.environ.get("INBOUND_WEBHOOK_SECRET", "")
    )
    # How far a signed webhook's x-webhook-timestamp may be from now (replay window).
    inbound_webhook_max_age: float = field(
        default_factory=lambda: _float("INBOUND_WEBHOOK_MAX_AGE_SECONDS", 300)
    )
    # Distinct PAL recipients accepted for one message (RFC 5321 asks for at least 100).
    smtp_max_recipients: int = field(default_factory=lambda: _int("SMTP_MAX_RECIPIENTS", 100))
    # A message whose ingestion failed this many times ends `failed` (never retried again).
    max_ingest_attempts: int = field(default_factory=lambda: max(1, _int("MAX_INGEST_ATTEMPTS", 5)))
    sender_auth: str = field(
        default_factory=lambda: os.environ.get("SENDER_AUTH", "strict").strip().lower()
    )
    trusted_authserv_ids: tuple[str, ...] = field(
        default_factory=lambda: _list("TRUSTED_AUTHSERV_IDS")
    )
    calendar_services: tuple[str, ...] = field(
        default_factory=lambda: _list("CALENDAR_SERVICE_DOMAINS", "google.com,icloud.com")
    )
    # Outbound mail (iMIP replies)
    smtp_relay_url: str = field(
        default_factory=lambda: os.environ.get("SMTP_RELAY_URL") or "smtp://127.0.0.1:1025"
    )
    # False: replies go to the development sink that `python -m app run` starts.
    smtp_relay_configured: bool = field(
        default_factory=lambda: bool(os.environ.get("SMTP_RELAY_URL"))
    )
    # Scheduling
    join_lead: timedelta = field(
        default_factory=lambda: timedelta(seconds=_float("JOIN_LEAD_SECONDS", 60))
    )
    planning_horizon: timedelta = field(
        default_factory=lambda: timedelta(days=_float("PLANNING_HORIZON_DAYS", 7))
    )
    # Bounds on what one invitation or tenant can make the shared workers do.
    max_joins_per_series_per_day: int = field(
        default_factory=lambda: _int("MAX_JOINS_PER_SERIES_PER_DAY", 6))
    max_planned_joins_per_pal: int = field(
        default_factory=lambda: _int("MAX_PLANNED_JOINS_PER_PAL", 100))
    max_bots_per_account: int = field(default_factory=lambda: _int("MAX_BOTS_PER_ACCOUNT", 10))
    # Meet bot
    chromium_path: str = field(
        default_factory=lambda: os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    )
    bot_browser_args: str = field(default_factory=lambda: os.environ.get("BOT_BROWSER_ARGS", ""))
    max_bots: int = field(default_factory=lambda: _int("MAX_BOTS_PER_WORKER", 4))
    waiting_room_timeout: float = field(
        default_factory=lambda: _float("WAITING_ROOM_TIMEOUT_SECONDS", 600)
    )
    alone_grace: float = field(default_factory=lambda: _float("ALONE_GRACE_SECONDS", 120))
    end_grace: timedelta = field(
        default_factory=lambda: timedelta(seconds=_float("END_GRACE_SECONDS", 600))
    )
    # Hosts (names, addresses or networks, comma-separated) a PAL's layers.realtime.websocket_url
    # may reach although they are loopback or private; all others must resolve to public addresses.
    agent_allowed_hosts: tuple[str, ...] = field(default_factory=lambda: _list("AGENT_ALLOWED_HOSTS"))
    # The same for webhook endpoint URLs (app/services/webhooks.py): loopback/private refused unless listed.
    webhook_allowed_hosts: tuple[str, ...] = field(default_factory=lambda: _list("WEBHOOK_ALLOWED_HOSTS"))
    media_dir: str = field(default_factory=lambda: os.environ.get("MEDIA_DIR", ".data/media"))
    face_media_cache_dir: str = field(default_factory=lambda: os.environ.get("FACE_MEDIA_CACHE_DIR", ""))
    # Live status
    allowed_origins: tuple[str, ...] = field(
        default_factory=lambda: tuple(
            o.strip() for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o.strip()
        )
    )
    max_subscriptions_per_connection: int = field(
        default_factory=lambda: _int("MAX_SUBSCRIPTIONS_PER_CONNECTION", 20)
    )
    # A websocket must send a valid connection_init this soon (else 4408); at most this many
    # websockets per API process may be waiting to do so (more are closed with 1013).
    ws_init_timeout: float = field(default_factory=lambda: _float("WS_INIT_TIMEOUT_SECONDS", 5))
    max_unauthenticated_websockets: int = field(
        default_factory=lambda: _int("MAX_UNAUTHENTICATED_WEBSOCKETS", 100)
    )
    # How long an API process trusts a valid key without asking PostgreSQL again: after
    # rotate-key the old key works this much longer, on REST, GraphQL and open websockets.
    auth_cache_seconds: float = field(default_factory=lambda: _float("AUTH_CACHE_SECONDS", 10))
    # GraphQL documents (app/graphql/limits.py): refused with QUERY_TOO_COMPLEX above these.
    graphql_max_query_length: int = field(
        default_factory=lambda: _int("GRAPHQL_MAX_QUERY_LENGTH", 32_768)
    )
    graphql_max_tokens: int = field(default_factory=lambda: _int("GRAPHQL_MAX_TOKENS", 1000))
    graphql_max_aliases: int = field(default_factory=lambda: _int("GRAPHQL_MAX_ALIASES", 15))
    graphql_max_depth: int = field(default_factory=lambda: _int("GRAPHQL_MAX_DEPTH", 10))
    graphql_max_cost: int = field(default_factory=lambda: _int("GRAPHQL_MAX_COST", 100_000))
    # LLM defaults for full-pipeline PALs (docs/llm-pipeline.md); a PAL's layers.llm overrides
    # them. Any OpenAI-compatible Chat Completions endpoint. With neither LLM_BASE_URL nor
    # LLM_API_KEY set there is no default LLM: a `full` PAL without layers.llm stays quiet.
    # The key is kept out of repr() so that logging the settings never shows it.
    llm_base_url: str = field(default_factory=lambda: os.environ.get("LLM_BASE_URL", ""))
    llm_api_key: str = field(default_factory=lambda: os.environ.get("LLM_API_KEY", ""), repr=False)
    llm_model: str = field(default_factory=lambda: os.environ.get("LLM_MODEL", "gpt-4o-mini"))
    llm_timeout: float = field(default_factory=lambda: _float("LLM_TIMEOUT_SECONDS", 20))
    # In the meeting a slow answer is worse than none: each answer's wait on the LLM is bounded.
    llm_answer_timeout: float = field(default_factory=lambda: _float("LLM_ANSWER_TIMEOUT_SECONDS", 8))
    llm_max_answer_chars: int = field(default_factory=lambda: _int("LLM_MAX_ANSWER_CHARS", 600))
    tts_timeout: float = field(default_factory=lambda: _float("TTS_TIMEOUT_SECONDS", 10))
    # Hosts a PAL's layers.llm / layers.tts base_url may reach although they are loopback or
    # private (same form as AGENT_ALLOWED_HOSTS); the operator's LLM_BASE_URL is always trusted.
    llm_allowed_hosts: tuple[str, ...] = field(default_factory=lambda: _list("LLM_ALLOWED_HOSTS"))
    # Encrypts the API keys PALs store (layers.llm.api_key, layers.tts.api_key). Unset: a key is
    # generated once into .data/secret.key (fine for one machine; set it when processes do not
    # share a disk). Changing it makes the stored keys unreadable (they are then treated as unset).
    secret_key: str = field(default_factory=lambda: os.environ.get("SECRET_KEY", ""), repr=False)
    # Metrics (docs/operations.md): the API serves GET /metrics on its own port; the worker and
    # the SMTP server on these ports (0: not served). With METRICS_TOKEN set, every /metrics
    # wants `Authorization: Bearer <token>`; it is kept out of repr() like the LLM key.
    metrics_host: str = field(default_factory=lambda: os.environ.get("METRICS_HOST", "127.0.0.1"))
    worker_metrics_port: int = field(default_factory=lambda: _int("WORKER_METRICS_PORT", 9101))
    smtp_metrics_port: int = field(default_factory=lambda: _int("SMTP_METRICS_PORT", 9102))
    metrics_token: str = field(default_factory=lambda: os.environ.get("METRICS_TOKEN", ""), repr=False)
    # GET /readyz: how long PostgreSQL and Redis each have to answer before it says 503.
    ready_timeout: float = field(default_factory=lambda: _float("READY_TIMEOUT_SECONDS", 2))

    @property
    def default_llm_base_url(self) -> str | None:
        """The operator's LLM endpoint, or None when there is no default LLM."""
        if self.llm_base_url:
            return self.llm_base_url
        return "https://api.openai.com/v1" if self.llm_api_key else None

    def data_path(self, name: str) -> Path:
        """A file under the project's data directory (.data, or PAL_DATA_DIR)."""
        return PROJECT_ROOT / (os.environ.get("PAL_DATA_DIR") or ".data") / name

_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def reset_settings() -> None:
    """Forget cached settings (tests change the environment)."""
    global _settings
    _settings = None
