#!/usr/bin/env bash
# Prints `export DATABASE_URL=... REDIS_URL=...` for a reachable PostgreSQL and Redis.
# Uses the given (or default loopback) servers when they answer; otherwise starts
# project-local ones from the machine's server binaries, with data under .data/
# (PAL_DATA_DIR overrides it). Also records the chosen URLs in .data/services.env
# (PAL_SERVICES_FILE overrides it), where app/config.py finds them for CLI commands
# run without DATABASE_URL / REDIS_URL.
# Usage: eval "$(scripts/ensure-services.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${PAL_DATA_DIR:-.data}
case "$DATA" in /*) ;; *) DATA="$ROOT/$DATA" ;; esac
SERVICES_FILE=${PAL_SERVICES_FILE:-$DATA/services.env}
DEFAULT_DB="postgresql://postgres@127.0.0.1:5432/pal"
DEFAULT_REDIS="redis://127.0.0.1:6379/0"
LOCAL_PG_PORT=${LOCAL_PG_PORT:-54329}
LOCAL_REDIS_PORT=${LOCAL_REDIS_PORT:-63799}

say() { echo "ensure-services: $*" >&2; }

reachable() {  # reachable URL -> exit 0 when something listens at its host:port
  python3 - "$1" <<'PY'
import socket, sys
from urllib.parse import urlparse
u = urlparse(sys.argv[1])
port = u.port or (5432 if u.scheme.startswith("postgres") else 6379)
try:
    socket.create_connection((u.hostname or "127.0.0.1", port), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

apt_install() {
  if [ "$(id -u)" != 0 ]; then say "missing $*; install them (Debian: apt-get install $*)"; exit 1; fi
  say "installing $* from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq "$@" >&2
}

start_local_postgres() {
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$bindir" ]; then apt_install postgresql; bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1); fi
  local pgdata="$DATA/pg" run=()
  mkdir -p "$DATA"
  # initdb refuses to run as root: run the server as the 'postgres' system user.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home "$DATA" postgres
    run=(runuser -u postgres --)
    mkdir -p "$pgdata"; chown postgres "$DATA" "$pgdata"
  fi
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    say "initialising a project-local PostgreSQL in $pgdata"
    "${run[@]}" "$bindir/initdb" -D "$pgdata" -U postgres --auth=trust >&2
  fi
  say "starting project-local PostgreSQL on 127.0.0.1:$LOCAL_PG_PORT"
  "${run[@]}" "$bindir/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $LOCAL_PG_PORT -k $pgdata" start >&2
}

start_local_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$DATA/redis"
  say "starting project-local Redis on 127.0.0.1:$LOCAL_REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$LOCAL_REDIS_PORT" --save "" \
    --appendonly no --dir "$DATA/redis" --logfile "$DATA/redis/redis.log" >&2
  for _ in $(seq 50); do reachable "redis://127.0.0.1:$LOCAL_REDIS_PORT" && return; sleep 0.1; done
}

db_url=${DATABASE_URL:-$DEFAULT_DB}
if ! reachable "$db_url"; then
  db_url="postgresql://postgres@127.0.0.1:$LOCAL_PG_PORT/pal"
  reachable "$db_url" || start_local_postgres
fi
redis_url=${REDIS_URL:-$DEFAULT_REDIS}
if ! reachable "$redis_url"; then
  redis_url="redis://127.0.0.1:$LOCAL_REDIS_PORT/0"
  reachable "$redis_url" || start_local_redis
fi
# Written to a temporary file and renamed, so a reader never sees half a file; mode 600,
# as DATABASE_URL may carry a password. A failure here only costs the CLI its fallback.
record_services() {
  local tmp
  mkdir -p "$(dirname "$SERVICES_FILE")" && tmp=$(mktemp "$SERVICES_FILE.XXXXXX") || return 1
  if printf '# written by scripts/ensure-services.sh; read by app/config.py\nDATABASE_URL=%s\nREDIS_URL=%s\n' \
      "$db_url" "$redis_url" >"$tmp" && mv -f "$tmp" "$SERVICES_FILE"; then
    return 0
  fi
  rm -f "$tmp"; return 1
}
record_services || say "could not record the services in $SERVICES_FILE"
echo "export DATABASE_URL='$db_url' REDIS_URL='$redis_url'"
