"""The editable PAL document: validation of a whole document and JSON Patch on it.

Both create and patch end in `validate_document`, so a PAL can only ever be
stored in a state that passes every rule, whichever API wrote it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jsonpatch
import jsonpointer

from app.domain.agent_links import validate_agent_url
from app.domain.allowlist import validate_allowlist
from app.domain.errors import QuotaExceeded, ValidationFailed
from app.domain.usernames import normalise_username

EDITABLE_FIELDS = ("pal_name", "system_prompt", "pipeline_mode", "default_face_id", "layers")
PIPELINE_MODES = ("full", "echo")
MAX_PAL_NAME = 200
MAX_SYSTEM_PROMPT = 100_000
MAX_PATCH_OPS = 100
# `layers` itself is level 1; the conferencing layer needs 3. Kept well under MAX_JSON_DEPTH
# (32) so that a document at this bound can still be sent whole to either API, and so that
# nothing that walks a stored document (deepcopy, jsonb, GraphQL's JSON scalar) can recurse far.
MAX_LAYERS_DEPTH = 20
KNOWN_CONFERENCING_KEYS = {"username", "allowlist"}


@dataclass(frozen=True)
class ValidPal:
    """A document that passed every rule, with the conferencing fields pulled out."""

    pal_name: str
    system_prompt: str
    pipeline_mode: str
    default_face_id: str | None
    layers: dict[str, Any]
    username: str | None
    allowlist: list[str]


def _string(doc: dict[str, Any], name: str, *, required: bool, limit: int, default: str = "") -> str:
    value = doc.get(name, None)
    if value is None:
        if required:
            raise ValidationFailed(f"{name} is required.", field=name)
        return default
    if not isinstance(value, str):
        raise ValidationFailed(f"{name} must be a string.", field=name)
    if required and not value.strip():
        raise ValidationFailed(f"{name} must not be empty.", field=name)
    if len(value) > limit:
        raise ValidationFailed(f"{name} must be at most {limit} characters.", field=name)
    if "\x00" in value:
        raise ValidationFailed(f"{name} must not contain the NUL character (U+0000).", field=name)
    return value


def nesting_exceeds(value: object, limit: int) -> bool:
    """Whether `value` (parsed JSON) nests objects and arrays deeper than `limit`; iterative."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _check_layers_bounds(layers: dict[str, Any], max_layers_bytes: int | None) -> None:
    if nesting_exceeds(layers, MAX_LAYERS_DEPTH):
        raise ValidationFailed(f"layers is nested deeper than {MAX_LAYERS_DEPTH} levels.", field="layers")
    try:
        size = len(json.dumps(layers, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode())
    except ValueError:
        raise ValidationFailed("layers must not contain NaN or Infinity.", field="layers") from None
    except TypeError:
        raise ValidationFailed("layers must hold JSON values only.", field="layers") from None
    if max_layers_bytes is not None and size > max_layers_bytes:
        raise QuotaExceeded(
            f"layers is {size} bytes of JSON; the quota is {max_layers_bytes} bytes per PAL (MAX_LAYERS_BYTES).",
            quota="MAX_LAYERS_BYTES", field="layers")


def _check_realtime(realtime: object) -> None:
    """layers.realtime: an object; its `websocket_url` (optional, null = none) is a ws/wss URL
    that a bot connects to (app/domain/agent_links.py). Its other keys are the owner's."""
    if realtime is None:
        return
    if not isinstance(realtime, dict):
        raise ValidationFailed("layers.realtime must be an object.", field="layers.realtime")
    url = realtime.get("websocket_url")
    if url is not None:
        validate_agent_url(url)


# --- layers.llm and layers.tts: the full pipeline's model and voice -------------------------------

SECRET_LAYERS = ("llm", "tts")
TTS_PROVIDERS = ("espeak-ng", "openai")
_LAYER_KEYS = {
    "llm": {"model", "base_url", "api_key", "api_key_set"},
    "tts": {"provider", "voice", "model", "base_url", "api_key", "api_key_set"},
}
MAX_MODEL_CHARS = 200
MAX_API_KEY_CHARS = 500
MAX_BASE_URL_CHARS = 2048


def _check_base_url(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"{field} must be an http:// or https:// URL.", field=field)
    if len(value) > MAX_BASE_URL_CHARS or not value.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        raise ValidationFailed(f"{field} must be an ASCII URL of at most {MAX_BASE_URL_CHARS} characters "
                               "without spaces or control characters.", field=field)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValidationFailed(f"{field} is not a valid URL ({exc}).", field=field) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(f"{field} must be an http:// or https:// URL with a host.", field=field)
    if "@" in parts.netloc:
        raise ValidationFailed(f"{field} must not carry credentials; use api_key.", field=field)
    return value


def _check_model_layers(layers: dict[str, Any]) -> dict[str, Any]:
    """layers.llm / layers.tts: known keys, bounded strings; `api_key_set` (what reads show) is dropped."""
    out = dict(layers)
    for name in SECRET_LAYERS:
        layer = layers.get(name)
        if layer is None:
            continue
        where = f"layers.{name}"
        if not isinstance(layer, dict):
            raise ValidationFailed(f"{where} must be an object.", field=where)
        unknown = set(layer) - _LAYER_KEYS[name]
        if unknown:
            key = sorted(unknown)[0]
            raise ValidationFailed(f"Unknown field {key!r} in {where}.", field=f"{where}.{key}")
        clean = {k: v for k, v in layer.items() if k != "api_key_set" and v is not None}
        for key in ("model", "voice"):
            if key in clean and (not isinstance(clean[key], str) or not clean[key].strip()
                                 or len(clean[key]) > MAX_MODEL_CHARS):
                raise ValidationFailed(f"{where}.{key} must be a non-empty string of at most "
                                       f"{MAX_MODEL_CHARS} characters.", field=f"{where}.{key}")
        if "base_url" in clean:
            _check_base_url(clean["base_url"], f"{where}.base_url")
        key = clean.get("api_key")
        if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_API_KEY_CHARS
                                or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in key)):
            raise ValidationFailed(f"{where}.api_key must be a string of at most {MAX_API_KEY_CHARS} "
                                   "characters without spaces or control characters.", field=f"{where}.api_key")
        if name == "tts":
            provider = clean.setdefault("provider", "espeak-ng")
            if provider not in TTS_PROVIDERS:
                raise ValidationFailed(f"layers.tts.provider must be one of {', '.join(TTS_PROVIDERS)}.",
                                       field="layers.tts.provider")
        out[name] = clean
    return out


def split_secrets(layers: dict[str, Any], stored: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Validated layers without their API keys, and the keys to keep (by layer name).

    A key sent in the document replaces the stored one; a layer sent without `api_key` keeps
    the stored key (a read-modify-write never sees it); a removed layer loses its key."""
    public = dict(layers)
    secrets: dict[str, str] = {}
    for name in SECRET_LAYERS:
        layer = layers.get(name)
        if not isinstance(layer, dict):
            continue
        layer = dict(layer)
        if "api_key" in layer:
            secrets[name] = layer.pop("api_key")
        elif name in stored:
            secrets[name] = stored[name]
        public[name] = layer
    return public, secrets


def shown_layers(layers: dict[str, Any], secret_names: set[str] | frozenset[str]) -> dict[str, Any]:
    """Layers as the API shows them: each model layer says whether a key is set, never the key."""
    out = dict(layers)
    for name in SECRET_LAYERS:
        layer = out.get(name)
        if isinstance(layer, dict):
            out[name] = {**{k: v for k, v in layer.items() if k != "api_key"}, "api_key_set": name in secret_names}
    return out


def agent_url(layers: object) -> str | None:
    """A stored PAL's layers.realtime.websocket_url, or None."""
    realtime = layers.get("realtime") if isinstance(layers, dict) else None
    url = realtime.get("websocket_url") if isinstance(realtime, dict) else None
    return url if isinstance(url, str) and url else None


def validate_document(doc: object, *, max_layers_bytes: int | None = None) -> ValidPal:
    """Validate a full PAL document (as sent to create, or as produced by a patch).

    `layers` is bounded in depth (MAX_LAYERS_DEPTH) and, when given, in size: its compact
    JSON encoding may not exceed `max_layers_bytes` (the MAX_LAYERS_BYTES quota)."""
    if not isinstance(doc, dict):
        raise ValidationFailed("The PAL must be a JSON object.", field="body")
    unknown = set(doc) - set(EDITABLE_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationFailed(f"Unknown field {name!r}.", field=name)
    pal_name = _string(doc, "pal_name", required=True, limit=MAX_PAL_NAME)
    system_prompt = _string(doc, "system_prompt", required=False, limit=MAX_SYSTEM_PROMPT)
    pipeline_mode = _string(doc, "pipeline_mode", required=False, limit=20, default="full")
    if pipeline_mode not in PIPELINE_MODES:
        raise ValidationFailed(
            f"pipeline_mode must be one of {', '.join(PIPELINE_MODES)}.", field="pipeline_mode"
        )
    face = doc.get("default_face_id")
    if face is not None and (not isinstance(face, str) or not face.strip() or len(face) > 32):
        raise ValidationFailed("default_face_id must be a face id string.", field="default_face_id")

    layers = doc.get("layers") or {}
    if not isinstance(layers, dict):
        raise ValidationFailed("layers must be an object.", field="layers")
    _check_layers_bounds(layers, max_layers_bytes)
    username: str | None = None
    allowlist: list[str] = []
    conferencing = layers.get("conferencing")
    if conferencing is not None:
        if not isinstance(conferencing, dict):
            raise ValidationFailed("layers.conferencing must be an object.", field="layers.conferencing")
        unknown = set(conferencing) - KNOWN_CONFERENCING_KEYS
        if unknown:
            name = sorted(unknown)[0]
            raise ValidationFailed(
                f"Unknown field {name!r} in layers.conferencing.", field=f"layers.conferencing.{name}"
            )
        if "username" not in conferencing:
            raise ValidationFailed(
                "layers.conferencing.username is required.", field="layers.conferencing.username"
            )
        username = normalise_username(conferencing["username"])
        allowlist = validate_allowlist(conferencing.get("allowlist"))
        if face is None:
            raise ValidationFailed(
                "default_face_id is required when layers.conferencing is provided.",
                field="default_face_id",
            )
        layers = {**layers, "conferencing": {"username": username, "allowlist": allowlist}}
    _check_realtime(layers.get("realtime"))
    layers = _check_model_layers(layers)
    return ValidPal(
        pal_name=pal_name,
        system_prompt=system_prompt,
        pipeline_mode=pipeline_mode,
        default_face_id=face,
        layers=layers,
        username=username,
        allowlist=allowlist,
    )


def _vivify_parents(doc: dict[str, Any], path: str) -> None:
    """Create missing parent objects for an `add`, so `/layers/conferencing/username`
    works on a PAL that has no conferencing layer yet (the spec's own example)."""
    parts = jsonpointer.JsonPointer(path).parts[:-1]
    node: Any = doc
    for part in parts:
        if not isinstance(node, dict):
            return
        if part not in node:
            node[part] = {}
        node = node[part]


def apply_patch(document: dict[str, Any], operations: object) -> dict[str, Any]:
    """Apply an RFC 6902 patch to a copy of `document`; all-or-nothing."""
    if not isinstance(operations, list):
        raise ValidationFailed("A patch must be a JSON array of operations.", field="body")
    if not operations:
        raise ValidationFailed("A patch needs at least one operation.", field="body")
    if len(operations) > MAX_PATCH_OPS:
        raise ValidationFailed(f"A patch may hold at most {MAX_PATCH_OPS} operations.", field="body")
    result = copy.deepcopy(document)
    for index, op in enumerate(operations):
        where = f"body[{index}]"
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise ValidationFailed("Each operation needs string 'op' and 'path'.", field=where)
        try:
            if op["op"] == "add":
                _vivify_parents(result, op["path"])
            result = jsonpatch.JsonPatch([op]).apply(result, in_place=False)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
            raise ValidationFailed(f"Operation {index} ({op['op']} {op['path']}) failed: {exc}", field=where) from None
    if not isinstance(result, dict):
        raise ValidationFailed("The patched PAL must be a JSON object.", field="body")
    return result
