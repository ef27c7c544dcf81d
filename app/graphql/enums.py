"""GraphQL enums for every closed set, generated from the domain's definitions (never copied).

Values travel as enum NAMES (IN_CALL, GOOGLE_MEET), the GraphQL convention; the REST API
keeps the stored strings (in_call, google_meet). A name is the stored value in upper case.
Resolvers may hand back the stored strings: graphql-core serialises by value.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import strawberry

from app.domain.decisions import MeetingDecision as DomainDecision
from app.domain.join_state import JOIN_REASON_CODES, JoinStatus as DomainJoinStatus, event_kinds
from app.domain.join_state import NotPlannedReason as DomainNotPlannedReason
from app.domain.meeting_notes import NOTES_STATUSES
from app.domain.pal_document import PIPELINE_MODES
from app.domain.platforms import Platform as DomainPlatform
from app.services.transcripts import KINDS as TRANSCRIPT_KINDS


def graphql_enum(name: str, values: Iterable[str], description: str) -> type[StrEnum]:
    """A Strawberry enum whose members are `values`, named in upper case."""
    members = {str(value).upper(): str(value) for value in values}
    return strawberry.enum(StrEnum(name, members), description=description)  # type: ignore[return-value]


JoinStatus = graphql_enum("JoinStatus", DomainJoinStatus, "Where a join is in its life (app/domain/join_state.py).")
JoinReason = graphql_enum(
    "JoinReason", JOIN_REASON_CODES,
    "Why a join was cancelled, failed, left or was re-queued. ERROR: an unexpected error of the bot run; "
    "OTHER: a reason this version does not know. `reasonDetail` always has the stored text.")
NotPlannedReason = graphql_enum("NotPlannedReason", DomainNotPlannedReason,
                                "Why an occurrence that could be joined gets no join.")
MeetingDecision = graphql_enum("MeetingDecision", DomainDecision, "What became of an invitation.")
Platform = graphql_enum("Platform", DomainPlatform, "The meeting platform of a link.")
PalEventKind = graphql_enum("PalEventKind", event_kinds(), "The kind of an entry in a PAL's event log.")
PipelineMode = graphql_enum("PipelineMode", PIPELINE_MODES, "How the PAL's bot handles the meeting's media.")
TranscriptKind = graphql_enum("TranscriptKind", TRANSCRIPT_KINDS, "What a transcript line is.")
NotesStatus = graphql_enum("NotesStatus", NOTES_STATUSES, "Where a meeting's notes are: none (nothing to write, or "
                           "an echo PAL), writing, ready or failed.")
