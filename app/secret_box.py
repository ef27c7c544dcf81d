"""Encryption of the API keys PALs store (layers.llm.api_key, layers.tts.api_key).

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key derived from SECRET_KEY.
Without SECRET_KEY a random key is created once in the data directory (.data/secret.key),
atomically, so the API and the worker of one machine agree on it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken

from app.config import get_settings

log = logging.getLogger(__name__)
MAX_SEALED_BYTES = 8192


class SecretUnreadable(Exception):
    """The stored secrets were sealed under another key (SECRET_KEY changed) or are corrupt."""


def _key_material() -> bytes:
    settings = get_settings()
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.data_path("secret.key")
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = base64.urlsafe_b64encode(os.urandom(32))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(fresh)
    log.info("created %s to encrypt stored API keys (set SECRET_KEY to choose one)", path)
    return fresh


@lru_cache(maxsize=4)
def _fernet(material: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"pal-secrets\0" + material).digest()))


def _box() -> Fernet:
    return _fernet(_key_material())


def seal(secrets: dict[str, str]) -> str | None:
    """The secrets encrypted for storage, or None when there are none."""
    if not secrets:
        return None
    return _box().encrypt(json.dumps(secrets, separators=(",", ":")).encode()).decode()


def unseal(sealed: str | None) -> dict[str, str]:
    """The stored secrets; raises SecretUnreadable when they cannot be decrypted."""
    if not sealed:
        return {}
    if len(sealed) > MAX_SEALED_BYTES:
        raise SecretUnreadable("sealed secrets are too large")
    try:
        data = json.loads(_box().decrypt(sealed.encode()))
    except (InvalidToken, ValueError) as exc:
        raise SecretUnreadable("stored API keys cannot be decrypted (was SECRET_KEY changed?)") from exc
    if not isinstance(data, dict):
        raise SecretUnreadable("stored API keys are corrupt")
    return {str(k): str(v) for k, v in data.items()}


def unseal_or_empty(sealed: str | None) -> dict[str, str]:
    """Like unseal, but unreadable secrets count as none (logged once per call)."""
    try:
        return unseal(sealed)
    except SecretUnreadable as exc:
        log.warning("%s; treating them as unset", exc)
        return {}
