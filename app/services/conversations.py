"""Dispatch by API: send a PAL into a Meet URL now, watch it, and make it leave.

The join itself belongs to app/services/joins.py; a conversation is the API's
handle on one join that no calendar planned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.domain.errors import Conflict, NotFound, ValidationFailed
from app.domain.ids import new_public_id
from app.domain.join_planning import PlannedJoin
from app.domain.join_state import CancelReason, JoinStatus
from app.domain.meeting_links import classify_url
from app.domain.paging import decode_cursor, encode_cursor
from app.domain.platforms import display_name, is_joinable, is_known, joinable_names
from app.domain.timefmt import iso_z
from app.services import media_relay, transcripts
from app.services import notes as meeting_notes
from app.services.faces import get_visible_face
from app.services.joins import cancel_join, conversation_join, create_join, joining_now
from app.tables import Conversation, Pal

MAX_URL = 2048
TRANSCRIPT_CURSOR = "transcript"


def meet_url(value: object) -> str:
    """The normalised Google Meet URL, or a 400 that says what is wrong with it."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("meeting_url is required.", field="meeting_url")
    if len(value) > MAX_URL:
        raise ValidationFailed("meeting_url is too long.", field="meeting_url")
    link = classify_url(value.strip())
    if link is None:
        raise ValidationFailed(f"meeting_url must be an https URL of a {joinable_names()}.", field="meeting_url")
    if is_joinable(link.platform):
        return link.url
    if is_known(link.platform):
        raise ValidationFailed(f"{display_name(link.platform)} meetings are not supported yet; "
                               f"only {joinable_names()} links can be joined.", field="meeting_url")
    raise ValidationFailed(f"meeting_url must be a {joinable_names()} link (https://meet.google.com/...).",
                           field="meeting_url")


def _view(conversation: dict[str, Any], join: dict[str, Any] | None, pal_id: str) -> dict[str, Any]:
    return {
        "conversation_id": conversation["conversation_id"],
        "pal_id": pal_id,
        "face_id": conversation["face_id"],
        "meeting_url": conversation["meeting_url"],
        "status": join["status"] if join else "unknown",
        "reason": join["reason"] if join else None,
        "join_id": join["id"] if join else None,
        "created_at": iso_z(conversation["created_at"]),
    }


def _string_field(data: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationFailed(f"{name} is required.", field=name)
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{name} must be a non-empty string.", field=name)
    return value.strip()


async def create_conversation(account_id: int, data: object, *, now: datetime) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", field="body")
    pal_id = _string_field(data, "pal_id", required=True)
    url = meet_url(data.get("meeting_url"))
    pal = await Pal.select().where((Pal.pal_id == pal_id) & (Pal.account == account_id)).first()
    if pal is None:
        raise NotFound(f"PAL {pal_id!r} not found.", field="pal_id")
    face_id = _string_field(data, "face_id", required=False) or pal["default_face_id"]
    if face_id is None:
        raise ValidationFailed("face_id is required when the PAL has no default_face_id.", field="face_id")
    await get_visible_face(account_id, face_id, field="face_id")
    busy = await joining_now(pal["id"], url, now)
    if busy:
        raise Conflict(f"The PAL is already joining or in that meeting (join {busy}).", field="meeting_url")
    rows = await Conversation.insert(Conversation(
        conversation_id=new_public_id("c"), account=account_id, pal=pal["id"], face_id=face_id,
        meeting_url=url, created_at=now)).returning(*Conversation.all_columns())
    conversation = rows[0]
    join = await create_join(pal["id"], PlannedJoin("", now, now, now, url), now,
                             conversation_pk=conversation["id"], pal_id=pal["pal_id"],
                             payload={"conversation_id": conversation["conversation_id"]})
    return _view(conversation, join, pal["pal_id"])


async def _owned(account_id: int, conversation_id: str) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    conversation = await Conversation.select(*Conversation.all_columns(), Conversation.pal.pal_id.as_alias("pal_id")).where(
        (Conversation.conversation_id == conversation_id) & (Conversation.account == account_id)).first()
    if conversation is None:
        raise NotFound(f"Conversation {conversation_id!r} not found.", field="conversation_id")
    return conversation, await conversation_join(conversation["id"]), conversation["pal_id"]


async def get_conversation(account_id: int, conversation_id: str) -> dict[str, Any]:
    return _view(*await _owned(account_id, conversation_id))


async def end_conversation(account_id: int, conversation_id: str, *, now: datetime) -> dict[str, Any]:
    """Make the PAL leave: a scheduled join is cancelled, a running bot is told to leave."""
    conversation, join, pal_id = await _owned(account_id, conversation_id)
    if join is not None:
        join = await cancel_join(join["id"], join["status"], CancelReason.ENDED_BY_API, now=now) or join
    return _view(conversation, join, pal_id)


# --- the media bridge: transcript, say, chat, stream (app/services/media_relay.py) ----------------

async def stream_target(account_id: int, conversation_id: str) -> dict[str, Any]:
    """The conversation a stream client may open (NotFound when not the account's)."""
    conversation, _, pal_id = await _owned(account_id, conversation_id)
    return {"pk": conversation["id"], "conversation_id": conversation["conversation_id"], "pal_id": pal_id}


async def conversation_exists(conversation_id: str) -> bool:
    """Whether any account has this conversation (the stream tells 4403 from 4404)."""
    return bool(await Conversation.exists().where(Conversation.conversation_id == conversation_id))


async def transcript(account_id: int, conversation_id: str, *, after: object = None,
                     first: object = None, cursor: object = None, cursor_field: str = "cursor") -> dict[str, Any]:
    """What was said and written in the meeting, in order; `after` (an entry id) or `cursor`
    (the `next_cursor` of the previous page, app/domain/paging.py) pages on."""
    key = decode_cursor(cursor, TRANSCRIPT_CURSOR, (int,), field=cursor_field)
    if key is not None:
        after = key[0]
    after, first = transcripts.page_bounds(after, first)
    conversation, _, _ = await _owned(account_id, conversation_id)
    entries, more = await transcripts.entries(conversation["id"], after=after, first=first)
    return {"conversation_id": conversation["conversation_id"], "entries": entries, "has_more": more,
            "next_cursor": transcript_cursor(entries[-1]["id"]) if more and entries else None}


def transcript_cursor(entry_id: int) -> str:
    """The opaque cursor after a transcript entry (REST's next_cursor, GraphQL's endCursor)."""
    return encode_cursor(TRANSCRIPT_CURSOR, entry_id)


async def notes(account_id: int, conversation_id: str) -> dict[str, Any]:
    """The meeting's notes (status `none`, `writing`, `ready` or `failed`)."""
    conversation, _, _ = await _owned(account_id, conversation_id)
    return meeting_notes.notes_view(conversation)


async def send_command(account_id: int, conversation_id: str, kind: str, data: object) -> dict[str, Any]:
    """Have the PAL say (`kind` "say") or write in the chat (`kind` "chat") `data["text"]`.

    404 when the conversation is not the account's, 400 for text outside 1..2000 characters,
    409 when its bot is not in the call."""
    conversation, join, _ = await _owned(account_id, conversation_id)
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.", field="body")
    text = transcripts.validate_text(data.get("text"))
    if join is None or join["status"] != JoinStatus.IN_CALL:
        status = join["status"] if join else "unknown"
        raise Conflict(f"The PAL is not in the call (status {status}).", field="conversation_id")
    await media_relay.publish_command(conversation["conversation_id"], media_relay.command(kind, text))
    return {"conversation_id": conversation["conversation_id"], "type": kind, "text": text}
