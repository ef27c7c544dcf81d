"""Settings read once from the environment.

Every knob an operator may turn lives here, with the default a developer
machine needs. Nothing else in the code reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta


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
        default_factory=lambda: os.environ.get(
            "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/pal"
        )
    )
    redis_url: str = field(
        default_factory=lambda: os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    email_domain: str = field(
        default_factory=lambda: os.environ.get("PAL_EMAIL_DOMAIN", "tavusinvite.com").lower()
    )
    api_host: str = field(default_factory=lambda: os.environ.get("API_HOST", "127.0.0.1"))
    api_port: int = field(default_factory=lambda: _int("API_PORT", 8000))
    max_body_bytes: int = field(default_factory=lambda: _int("MAX_BODY_BYTES", 1_000_000))
    # Inbound mail
    smtp_host: str = field(default_factory=lambda: os.environ.get("SMTP_HOST", "127.0.0.1"))
    smtp_port: int = field(default_factory=lambda: _int("SMTP_PORT", 2525))
    max_message_bytes: int = field(
        default_factory=lambda: _int("MAX_MESSAGE_BYTES", 10 * 1024 * 1024)
    )
    inbound_webhook_secret: str = field(
        default_factory=lambda: os.environ.get("INBOUND_WEBHOOK_SECRET", "")
    )
    sender_auth: str = field(
        default_factory=lambda: os.environ.get("SENDER_AUTH", "mark").lower()
    )
    trusted_authserv_ids: tuple[str, ...] = field(
        default_factory=lambda: _list("TRUSTED_AUTHSERV_IDS")
    )
    calendar_services: tuple[str, ...] = field(
        default_factory=lambda: _list(
            "CALENDAR_SERVICE_DOMAINS",
            "google.com,calendar.google.com,icloud.com,me.com,mac.com,"
            "outlook.com,hotmail.com,live.com,office365.com,microsoft.com,"
            "exchange.microsoft.com",
        )
    )
    # Outbound mail (iMIP replies)
    smtp_relay_url: str = field(
        default_factory=lambda: os.environ.get("SMTP_RELAY_URL", "smtp://127.0.0.1:1025")
    )
    # Scheduling
    join_lead: timedelta = field(
        default_factory=lambda: timedelta(seconds=_float("JOIN_LEAD_SECONDS", 60))
    )
    planning_horizon: timedelta = field(
        default_factory=lambda: timedelta(days=_float("PLANNING_HORIZON_DAYS", 7))
    )
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
    media_dir: str = field(default_factory=lambda: os.environ.get("MEDIA_DIR", ".data/media"))
    # Live status
    allowed_origins: tuple[str, ...] = field(
        default_factory=lambda: tuple(
            o.strip() for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o.strip()
        )
    )
    max_subscriptions_per_connection: int = field(
        default_factory=lambda: _int("MAX_SUBSCRIPTIONS_PER_CONNECTION", 20)
    )


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
