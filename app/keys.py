"""Every name this service gives to things in Redis, defined once.

Job function names, job id formats, lock and lease keys and pub/sub channels are
imported from here by the API, the workers, the tests and the benchmarks, so a
rename can never leave one side talking to a key nobody reads (arq's own
``constants.py`` is the model).
"""

from __future__ import annotations

# arq's own keys (arq/constants.py); tests and benchmarks peek at them.
ARQ_QUEUE = "arq:queue"

# Job function names: what the API enqueues and what workers/settings.py registers.
JOB_RUN_JOIN = "run_join"
JOB_INGEST_MESSAGE = "ingest_message"
JOB_FLUSH_OUTBOX = "flush_outbox"

# Cron-held locks: one tick at a time across every worker.
RECONCILE_LOCK = "reconcile-lock"
RECOVER_LOCK = "recover-bots-lock"


def join_job_id(join_pk: int, plan_version: int) -> str:
    """One id per (join, plan version): a re-plan gets a new job, and the old one finds itself stale."""
    return f"join:{join_pk}:v{plan_version}"


def ingest_job_id(message_pk: int, attempt: int | None = None) -> str:
    """First delivery and each requeue attempt get their own id, so a requeue is never refused."""
    return f"ingest:{message_pk}" if attempt is None else f"ingest:{message_pk}:{attempt}"


def bot_lease_key(join_pk: int) -> str:
    """Held (and renewed) by the worker whose bot runs this join; its expiry means the worker died."""
    return f"bot-lease:{join_pk}"


def pal_events_channel(pal_id: str) -> str:
    """The pub/sub channel that wakes a PAL's live subscribers."""
    return f"pal-events:{pal_id}"


# The media bridge of one conversation (one bot run): the worker that runs the bot and
# every API process with stream clients meet on these channels.
def conversation_audio_channel(conversation_id: str) -> str:
    """Binary: the meeting's audio, 16 kHz mono s16le frames of at most 100 ms (worker -> API)."""
    return f"conv-audio:{conversation_id}"


def conversation_events_channel(conversation_id: str) -> str:
    """JSON text: transcript, chat and status events of the conversation (worker -> API)."""
    return f"conv-events:{conversation_id}"


def conversation_voice_channel(conversation_id: str) -> str:
    """Binary: the PAL's voice to play in the meeting, same PCM format (API -> worker)."""
    return f"conv-voice:{conversation_id}"


def conversation_commands_channel(conversation_id: str) -> str:
    """JSON text: {"type": "say"|"chat"|"clear", ...} for the bot (API -> worker)."""
    return f"conv-commands:{conversation_id}"
