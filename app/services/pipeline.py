"""What a full-pipeline PAL needs for one bot run: its LLM, its voice and the meeting's context.

Read once when the run starts (workers/joins.py): the PAL's `pipeline_mode`, `system_prompt`,
`layers.llm` / `layers.tts` (keys unsealed here, never logged), the LLM_* defaults, the
invitation's title / organizer / attendees, and the notes of the series' last three occurrences.
A PAL's own base_url must resolve to public addresses unless LLM_ALLOWED_HOSTS lists it; the
operator's LLM_BASE_URL is trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from app.config import get_settings
from app.domain.agent_links import address_refusal
from app.services.resolve import addresses_of, resolve
from app.domain.calendar_state import meeting_people
from app.domain.meeting_prompt import MeetingInfo
from app.secret_box import unseal_or_empty
from app.services import notes
from app.tables import CalendarEvent, Join, Pal

FULL = "full"


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server: where, with which key (repr never shows it), which model."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout: float = 8.0
    trusted: bool = False  # the operator's own setting: no address check
    voice: str = ""  # TTS only


@dataclass(frozen=True)
class PipelineSetup:
    mode: str
    pal_name: str
    system_prompt: str
    meeting: MeetingInfo | None = None
    previous_notes: tuple[str, ...] = ()
    llm: Endpoint | None = None
    tts: Endpoint | None = None  # None: espeak-ng, the face's voice
    problem: str | None = None  # why a full PAL has no LLM (then it behaves like echo)

    @property
    def thinks(self) -> bool:
        return self.mode == FULL and self.llm is not None


def _layer(layers: Any, name: str) -> dict[str, Any]:
    if isinstance(layers, str):
        layers = json.loads(layers)
    value = layers.get(name) if isinstance(layers, dict) else None
    return value if isinstance(value, dict) else {}


def llm_endpoint(layers: Any, secrets: dict[str, str]) -> tuple[Endpoint | None, str | None]:
    """The PAL's LLM (its layers.llm over the LLM_* defaults), or None and why."""
    s = get_settings()
    own = _layer(layers, "llm")
    base = own.get("base_url") or s.default_llm_base_url
    if not base:
        return None, "no LLM configured (set LLM_BASE_URL / LLM_API_KEY, or the PAL's layers.llm)"
    trusted = not own.get("base_url")
    key = secrets.get("llm") or (s.llm_api_key if trusted else "")
    return Endpoint(base_url=base, model=own.get("model") or s.llm_model, api_key=key,
                    timeout=s.llm_answer_timeout, trusted=trusted), None


def tts_endpoint(layers: Any, secrets: dict[str, str], llm: Endpoint | None) -> Endpoint | None:
    """layers.tts with provider "openai": an /audio/speech endpoint (base_url defaults to the LLM's)."""
    own = _layer(layers, "tts")
    if own.get("provider") != "openai":
        return None
    s = get_settings()
    if own.get("base_url"):
        base, trusted, key = own["base_url"], False, secrets.get("tts", "")
    elif llm is not None:
        base, trusted, key = llm.base_url, llm.trusted, secrets.get("tts") or llm.api_key
    else:
        return None
    return Endpoint(base_url=base, model=own.get("model") or "tts-1", api_key=key, timeout=s.tts_timeout,
                    trusted=trusted, voice=own.get("voice") or "alloy")


async def endpoint_refusal(endpoint: Endpoint) -> str | None:
    """Why the bot may not call `endpoint` (a PAL's base_url reaching a private address), or None."""
    if endpoint.trusted:
        return None
    parts = urlsplit(endpoint.base_url)
    host = (parts.hostname or "").rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await resolve(host, port)
    except OSError as exc:
        return f"{host} did not resolve ({exc.strerror or exc})"
    addresses = sorted(addresses_of(infos))
    return address_refusal(host, addresses, get_settings().llm_allowed_hosts, setting="LLM_ALLOWED_HOSTS")


async def setup_for_run(pal_pk: int, join_pk: int) -> PipelineSetup:
    """Everything the participant loop needs, read once at the start of a run."""
    pal = await Pal.select(Pal.pal_name, Pal.system_prompt, Pal.pipeline_mode, Pal.layers, Pal.secrets).where(
        Pal.id == pal_pk).first()
    if pal is None:
        return PipelineSetup(mode="echo", pal_name="", system_prompt="", problem="the PAL is gone")
    base = PipelineSetup(mode=pal["pipeline_mode"], pal_name=pal["pal_name"], system_prompt=pal["system_prompt"])
    if pal["pipeline_mode"] != FULL:
        return base
    secrets = unseal_or_empty(pal["secrets"])
    llm, problem = llm_endpoint(pal["layers"], secrets)
    tts = tts_endpoint(pal["layers"], secrets, llm)
    meeting, previous = await _context(join_pk)
    return PipelineSetup(mode=FULL, pal_name=pal["pal_name"], system_prompt=pal["system_prompt"], meeting=meeting,
                         previous_notes=tuple(previous), llm=llm, tts=tts, problem=problem)


async def _context(join_pk: int) -> tuple[MeetingInfo | None, list[str]]:
    join = await Join.select(Join.calendar_event).where(Join.id == join_pk).first()
    if join is None or join["calendar_event"] is None:
        return None, []
    event = await CalendarEvent.select(CalendarEvent.summary, CalendarEvent.organizer, CalendarEvent.ics).where(
        CalendarEvent.id == join["calendar_event"]).first()
    if event is None:
        return None, []
    organizer, attendees = meeting_people(event["ics"])
    info = MeetingInfo(title=event["summary"], organizer=organizer or event["organizer"], attendees=tuple(attendees))
    return info, await notes.previous_in_series(join_pk)
