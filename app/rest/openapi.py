"""What the OpenAPI document (/docs) says about REST /v2: bodies, views and errors.

Request bodies stay `Any` to the handlers, so the services keep validating them and keep
their messages; their schemas here describe the same rules for the document. Views are
TypedDicts matching what the services return. Every error is `ErrorBody`, as
app/rest/common.py writes it. tests/integration/test_openapi_contract.py runs
schemathesis against the document to keep it true.
"""

from typing import Any, NotRequired, TypedDict

from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme

from app.domain.allowlist import MAX_ENTRIES, MAX_ENTRY_LENGTH
from app.domain.paging import DEFAULT_PAGE, MAX_PAGE
from app.domain.pal_document import MAX_PAL_NAME, MAX_PATCH_OPS, MAX_SYSTEM_PROMPT, PIPELINE_MODES
from app.domain.usernames import MAX_LENGTH as MAX_USERNAME, USERNAME_PATTERN


API_KEY = "ApiKey"
SECURITY = [{API_KEY: []}]  # `security=` of every controller that needs the x-api-key header


def openapi_config() -> OpenAPIConfig:
    """The document at /docs (JSON at /docs/openapi.json). GraphQL is described by its own
    schema (schema.graphql, GraphiQL at /graphql), not here."""
    return OpenAPIConfig(
        title="PAL meetings API", version="2", path="/docs",
        components=Components(security_schemes={API_KEY: SecurityScheme(
            type="apiKey", name="x-api-key", security_scheme_in="header",
            description="The account's API key, as printed by `python -m app create-account`.")}),
    )


class ErrorBody(TypedDict):
    """Every REST error."""

    error: str
    field: NotRequired[str]
    code: NotRequired[str]


_ERROR_MEANINGS = {
    400: "Bad input; `field` names the offending field when there is one.",
    401: "Missing or unknown API key (x-api-key header).",
    403: "A quota of the account would be exceeded (code QUOTA_EXCEEDED; the message names the quota).",
    404: "Not found, or owned by another account.",
    408: "The request body arrived too slowly.",
    409: "Conflicts with the current state.",
    413: "The request body is too large.",
}


# ?limit=&cursor= on every REST list that can grow (app/domain/paging.py).
PAGE_LIMIT_DESCRIPTION = f"At most this many items (1-{MAX_PAGE}, default {DEFAULT_PAGE})."
PAGE_CURSOR_DESCRIPTION = "The `next_cursor` of the previous page (opaque); omit for the first page."


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """`responses=` for a handler: each status documented with the real error body."""
    return {status: ResponseSpec(ErrorBody, description=_ERROR_MEANINGS[status], generate_examples=False)
            for status in statuses}


# --- request bodies (JSON Schema for the document; the services do the validating) ---

def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


CONFERENCING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The PAL's meeting identity: <username>@<email domain>, and who may invite it.",
    "required": ["username"],
    "additionalProperties": False,
    "properties": {
        "username": {"type": "string", "minLength": 2, "maxLength": MAX_USERNAME,
                     "pattern": USERNAME_PATTERN.pattern,
                     "description": "Stored in lower case; botN is reserved; unique per email domain."},
        "allowlist": _nullable({
            "type": "array", "maxItems": MAX_ENTRIES,
            "items": {"type": "string", "maxLength": MAX_ENTRY_LENGTH},
            "description": "Exact addresses or RE2 expressions (full match, case-insensitive); empty admits anyone.",
        }),
    },
}

PAL_DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["pal_name"],
    "additionalProperties": False,
    "properties": {
        "pal_name": {"type": "string", "minLength": 1, "maxLength": MAX_PAL_NAME, "pattern": r"\S"},
        "system_prompt": _nullable({"type": "string", "maxLength": MAX_SYSTEM_PROMPT}),
        "pipeline_mode": _nullable({"type": "string", "enum": list(PIPELINE_MODES)}),
        "default_face_id": _nullable({"type": "string", "minLength": 1, "maxLength": 32, "pattern": r"\S",
                                      "description": "Required with layers.conferencing."}),
        "layers": _nullable({
            "type": "object",
            "description": "Free-form layers (bounded in depth and size, MAX_LAYERS_BYTES); "
                           "`conferencing` is the meeting identity.",
            "properties": {"conferencing": CONFERENCING_SCHEMA},
        }),
    },
}

JSON_PATCH_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": "RFC 6902 operations, applied all-or-nothing; the result must be a valid PAL document. "
                   "`add` creates missing parent objects.",
    "minItems": 1,
    "maxItems": MAX_PATCH_OPS,
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": {"type": "string", "description": "JSON Pointer, e.g. /layers/conferencing/allowlist"},
            "from": {"type": "string"},
            "value": {},
        },
    },
}

CONVERSATION_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["pal_id", "meeting_url"],
    "properties": {
        "pal_id": {"type": "string", "minLength": 1},
        "face_id": _nullable({"type": "string", "minLength": 1,
                              "description": "Defaults to the PAL's default_face_id."}),
        "meeting_url": {"type": "string", "minLength": 1, "maxLength": 2048,
                        "description": "A Google Meet link, https://meet.google.com/abc-defg-hij."},
    },
}


TEXT_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["text"],
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"\S",
                 "description": "1 to 2000 characters (trimmed)."},
    },
}


# --- views (what the services return) ---

class PalView(TypedDict):
    pal_id: str
    pal_name: str
    system_prompt: str
    pipeline_mode: str
    default_face_id: str | None
    layers: dict[str, Any]
    conferencing_email: str | None
    created_at: str
    updated_at: str


class PalList(TypedDict):
    data: list[PalView]
    total_count: int  # all of them, not only this page
    next_cursor: str | None  # pass as ?cursor= for the next page; null on the last page


class UsernameAvailability(TypedDict):
    available: bool
    reason: NotRequired[str]


class FaceView(TypedDict):
    face_id: str
    name: str
    voice: str
    stock: bool
    video: str
    audio: str
    created_at: str


class FaceList(TypedDict):
    data: list[FaceView]
    total_count: int


class ConversationView(TypedDict):
    conversation_id: str
    pal_id: str
    face_id: str | None
    meeting_url: str
    status: str
    reason: str | None
    join_id: int | None
    created_at: str


class JoinView(TypedDict):
    id: int
    event_id: int | None
    uid: str | None
    summary: str | None
    recurrence_id: str | None
    conversation_id: str | None
    meeting_url: str
    start_at: str | None
    end_at: str | None
    join_at: str | None
    status: str
    reason: str | None
    plan_version: int
    updated_at: str | None


class StatusChange(TypedDict):
    status: str
    reason: str | None
    at: str | None


class JoinDetail(JoinView):
    pal_id: str
    history: list[StatusChange]


class JoinList(TypedDict):
    data: list[JoinView]
    total_count: int  # all of them, not only this page
    next_cursor: str | None  # pass as ?cursor= for the next page; null on the last page


class Occurrence(TypedDict):
    recurrence_id: str | None
    start_at: str | None
    end_at: str | None
    meeting_url: str | None
    platform: str | None


class MeetingView(TypedDict):
    event_id: int
    uid: str
    summary: str | None
    organizer: str | None
    meeting_url: str | None
    platform: str | None
    decision: str | None
    reason: str | None
    authenticated: bool | None
    sequence: int | None
    cancelled: bool | None
    cancelled_instances: list[Any]
    timezone_problems: list[Any]
    unplanned: list[Any]
    occurrences: list[Occurrence]
    created_at: str | None
    updated_at: str | None


class MeetingList(TypedDict):
    data: list[MeetingView]
    total_count: int  # all of them, not only this page
    next_cursor: str | None  # pass as ?cursor= for the next page; null on the last page


class TranscriptEntryView(TypedDict):
    id: int
    kind: str  # speech | chat
    speaker: str
    text: str
    at: str
    self: bool


class TranscriptView(TypedDict):
    conversation_id: str
    entries: list[TranscriptEntryView]
    has_more: bool
    next_cursor: str | None  # pass as ?cursor= for the next page; null on the last page


class CommandAccepted(TypedDict):
    conversation_id: str
    type: str  # say | chat
    text: str


class ActionItemView(TypedDict):
    owner: str
    task: str


class NotesView(TypedDict):
    conversation_id: str
    status: str  # none | writing | ready | failed
    summary: str | None
    decisions: list[str]
    action_items: list[ActionItemView]
    text: str | None
    error: str | None
    created_at: str | None


# --- webhooks (app/rest/webhooks.py; docs/webhooks.md) ---

def _webhook_body_schema(required: list[str]) -> dict[str, Any]:
    from app.domain.urls import MAX_URL_LENGTH
    from app.domain.webhooks import EVENT_TYPES

    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": {
            "url": {"type": "string", "minLength": 1, "maxLength": MAX_URL_LENGTH, "format": "uri",
                    "description": "http(s) URL without credentials; loopback/private hosts need "
                                   "WEBHOOK_ALLOWED_HOSTS."},
            "event_types": _nullable({"type": "array", "maxItems": len(EVENT_TYPES),
                                      "items": {"type": "string", "enum": list(EVENT_TYPES)},
                                      "description": "Empty or null: every type but conversation.transcript."}),
            "enabled": {"type": "boolean"},
        },
    }


WEBHOOK_CREATE_SCHEMA: dict[str, Any] = _webhook_body_schema(["url"])
WEBHOOK_PATCH_SCHEMA: dict[str, Any] = _webhook_body_schema([])


class WebhookView(TypedDict):
    webhook_id: str
    url: str
    event_types: list[str]
    enabled: bool
    failing: bool
    failing_since: str | None
    created_at: str
    updated_at: str
    secret: NotRequired[str]  # whsec_…: only in the answers to create and rotate-secret


class WebhookList(TypedDict):
    data: list[WebhookView]
    total_count: int


class DeliveryView(TypedDict):
    delivery_id: str
    webhook_id: str
    event_type: str | None
    status: str  # pending | sent | failed
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: str
    next_attempt_at: str | None
    sent_at: str | None
    body: dict[str, Any]


class DeliveryList(TypedDict):
    data: list[DeliveryView]
    has_more: bool
    next_cursor: str | None
