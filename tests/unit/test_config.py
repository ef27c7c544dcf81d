"""Settings: the services file `make run` records, and its precedence under the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    PROJECT_ROOT,
    Settings,
    parse_env_file,
    services_file,
)

DB = "postgresql://postgres@127.0.0.1:54329/pal"
REDIS = "redis://127.0.0.1:63799/0"


def test_parse_reads_key_value_lines_and_strips_quotes() -> None:
    text = (
        "# written by scripts/ensure-services.sh\n"
        f"DATABASE_URL='{DB}'\n"
        f'REDIS_URL="{REDIS}"\n'
        "export PLAIN = value with spaces \n"
        "EMPTY=\n"
        "not a pair\n"
        "=no key\n"
        "bad key=x\n"
        "\n"
        "URL_WITH_EQUALS=postgresql://u@h/db?options=-c%20x=1\n"
        "HALF='quoted\n"
    )
    assert parse_env_file(text) == {
        "DATABASE_URL": DB,
        "REDIS_URL": REDIS,
        "PLAIN": "value with spaces",
        "EMPTY": "",
        "URL_WITH_EQUALS": "postgresql://u@h/db?options=-c%20x=1",
        "HALF": "'quoted",
    }


def test_parse_keeps_the_last_value_of_a_repeated_key() -> None:
    assert parse_env_file("A=1\nA=2\n") == {"A": "2"}


@pytest.fixture
def no_service_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("DATABASE_URL", "REDIS_URL", "PAL_SERVICES_FILE", "PAL_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_services_file_fills_in_what_the_environment_lacks(no_service_env, tmp_path: Path) -> None:
    recorded = tmp_path / "services.env"
    recorded.write_text(f"DATABASE_URL='{DB}'\nREDIS_URL='{REDIS}'\n")
    no_service_env.setenv("PAL_SERVICES_FILE", str(recorded))

    settings = Settings()
    assert (settings.database_url, settings.redis_url) == (DB, REDIS)

    no_service_env.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5555/other")
    no_service_env.setenv("REDIS_URL", "")  # empty counts as unset, as in ensure-services.sh
    settings = Settings()
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5555/other"
    assert settings.redis_url == REDIS


def test_without_a_file_or_environment_the_loopback_defaults_apply(no_service_env, tmp_path: Path) -> None:
    no_service_env.setenv("PAL_SERVICES_FILE", str(tmp_path / "missing.env"))
    settings = Settings()
    assert (settings.database_url, settings.redis_url) == (DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL)

    (tmp_path / "missing.env").write_text(f"REDIS_URL={REDIS}\n")  # a file with only one of them
    settings = Settings()
    assert (settings.database_url, settings.redis_url) == (DEFAULT_DATABASE_URL, REDIS)


def test_the_file_lives_in_the_project_data_dir(no_service_env, tmp_path: Path) -> None:
    assert services_file() == PROJECT_ROOT / ".data" / "services.env"
    assert (PROJECT_ROOT / "app" / "config.py").is_file()
    no_service_env.setenv("PAL_DATA_DIR", str(tmp_path))
    assert services_file() == tmp_path / "services.env"
    no_service_env.setenv("PAL_SERVICES_FILE", str(tmp_path / "elsewhere.env"))
    assert services_file() == tmp_path / "elsewhere.env"


def test_log_level_and_relay_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.delenv("SMTP_RELAY_URL", raising=False)
    settings = Settings()
    assert settings.log_level == "INFO"
    assert not settings.smtp_relay_configured
    assert settings.smtp_relay_url == "smtp://127.0.0.1:1025"

    monkeypatch.setenv("LOG_LEVEL", "warning")
    monkeypatch.setenv("SMTP_RELAY_URL", "smtps://u:p@127.0.0.1:465")
    settings = Settings()
    assert settings.log_level == "WARNING"
    assert settings.smtp_relay_configured
    assert settings.smtp_relay_url == "smtps://u:p@127.0.0.1:465"
