"""When a full-pipeline PAL speaks in a meeting: greeting, answers, pauses and barge-in. Pure.

``TurnPolicy`` is fed what happens (caption lines, its own speaking state, the clock) and
answers with what to do. It never talks over people:

* it greets once, when it is admitted;
* it answers a final caption line that addresses it by name (``addresses``), at once if
  nobody else is mid-sentence, else as soon as they pause;
* it answers a question nobody took up: a final line ending in "?" followed by ``question_pause``
  seconds in which nobody spoke (and not addressed to someone else by name at its start);
* while it talks (an answer being thought or spoken), anyone else's caption text makes it stop
  at once (barge-in), and so does the meeting's audio (which never holds the PAL's own voice)
  staying loud for ``barge_in_after`` seconds: captions trail speech by a second or so, the
  audio does not. The interrupted turn is not retried;
* ``min_gap`` seconds between the end of one answer and the next, at most ``max_per_minute``
  answers a minute, so a noisy room cannot make it talk all the time.

Times are seconds on any monotonic clock.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*", re.UNICODE)
# A line opening with "Name," or "Name:" talks to that person.
_VOCATIVE = re.compile(r"^\s*(?:hey|hi|ok|okay|so|and)?\s*,?\s*([^\W\d_][\w'’-]*)\s*[,:]", re.UNICODE | re.I)
# A caption must carry this much text before it counts as someone speaking (noise, "um").
MIN_BARGE_IN_CHARS = 3


class Act(StrEnum):
    GREET = "greet"
    ANSWER = "answer"
    BARGE_IN = "barge_in"


@dataclass(frozen=True)
class Decision:
    act: Act
    speaker: str = ""
    text: str = ""  # the line answered, for the prompt and the log
    why: str = ""  # "addressed", "question", "admitted", "interrupted"


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower() or text.lower()


def name_words(pal_name: str) -> tuple[str, ...]:
    """The words people may call the PAL by: its first name, and its whole name when longer."""
    words = [_fold(w) for w in _WORD.findall(pal_name or "")]
    words = [w for w in words if len(w) >= 2]
    if not words:
        return ()
    return (words[0],) if len(words) == 1 else (words[0], " ".join(words))


def addresses(text: str, names: tuple[str, ...]) -> bool:
    """Whether the line calls the PAL by one of `names` (whole words, any case or accent)."""
    if not names:
        return False
    folded = " ".join(_fold(w) for w in _WORD.findall(text))
    return any(re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", folded) for n in names)


def is_question(text: str) -> bool:
    return text.rstrip().rstrip("\"'”’)").endswith("?")


def addressed_elsewhere(text: str, names: tuple[str, ...]) -> bool:
    """A line opening with another person's name ("Bob, can you ...?") is not for the PAL."""
    m = _VOCATIVE.match(text)
    return bool(m) and _fold(m.group(1)) not in {n.split()[0] for n in names}


class PerMinute:
    """How many things happened in the last 60 s: a sliding window of their times."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def recent(self, now: float) -> int:
        while self.times and now - self.times[0] >= 60:
            self.times.popleft()
        return len(self.times)

    def add(self, now: float) -> None:
        self.times.append(now)


@dataclass
class TurnPolicy:
    pal_name: str
    question_pause: float = 2.5
    min_gap: float = 1.0
    max_per_minute: int = 6
    others_pause: float = 0.8  # someone's partial line this recent means they are still talking
    barge_in_after: float = 0.3  # s of loud meeting audio while the PAL talks

    def __post_init__(self) -> None:
        self.names = name_words(self.pal_name)
        self.greeted = False
        self.talking = False  # an answer is being thought or spoken
        self.last_turn_end = float("-inf")
        self.last_other_text_at = float("-inf")
        self.others_live: dict[str, float] = {}  # line key -> when its partial text last grew
        self.pending: Decision | None = None  # an answer waiting for a pause
        self.question: tuple[Decision, float] | None = None  # an open question and when it was asked
        self.turns = PerMinute()  # turns taken (answers and the greeting)
        self.chats = PerMinute()  # chat answers, under the same limit
        self.loud_since: float | None = None
        self.turn_started = float("-inf")

    # --- inputs --------------------------------------------------------------------------------
    def admitted(self, now: float) -> Decision | None:
        if self.greeted:
            return None
        self.greeted = True
        return self._take(Decision(Act.GREET, why="admitted"), now)

    def caption(self, key: str, speaker: str, text: str, final: bool, now: float) -> Decision | None:
        """A caption line of someone else (never the PAL's own) grew or ended."""
        if len(text.strip()) < MIN_BARGE_IN_CHARS:
            return None
        self.last_other_text_at = now
        self.question = None  # someone spoke: an earlier open question is no longer hanging
        if final:
            self.others_live.pop(key, None)
        else:
            self.others_live[key] = now
        if self.talking:
            return self._interrupted(now, Decision(Act.BARGE_IN, speaker, text, "interrupted"))
        if not final:
            return None
        if addresses(text, self.names):
            self.pending = Decision(Act.ANSWER, speaker, text, "addressed")
            return self.tick(now)
        if is_question(text) and not addressed_elsewhere(text, self.names):
            self.question = (Decision(Act.ANSWER, speaker, text, "question"), now)
        return None

    def heard(self, loud: bool, now: float) -> Decision | None:
        """One frame of the meeting's audio (everyone but the PAL): loud or not."""
        if not loud:
            self.loud_since = None
            return None
        if self.loud_since is None:
            self.loud_since = now
        # Loud since before the PAL began is the room's noise (a hum, a fan), not an interruption.
        if self.talking and self.loud_since >= self.turn_started and now - self.loud_since >= self.barge_in_after:
            return self._interrupted(now, Decision(Act.BARGE_IN, why="heard"))
        return None

    def finished(self, now: float) -> None:
        """The PAL's turn is over (all of it spoken, or it failed)."""
        self.talking = False
        self.last_turn_end = now

    def _interrupted(self, now: float, decision: Decision) -> Decision:
        """Someone else started talking: the PAL's turn ends, and what it was about to say goes."""
        self.finished(now)
        self.pending = None
        return decision

    def tick(self, now: float) -> Decision | None:
        """What to do now, given the time: a pending answer once others pause, an open question."""
        if self.talking or now - self.last_turn_end < self.min_gap:
            return None
        if any(now - at < self.others_pause for at in self.others_live.values()):
            return None
        if self.pending is not None:
            decision, self.pending = self.pending, None
            return self._take(decision, now)
        if self.question is not None and now - self.question[1] >= self.question_pause:
            decision, self.question = self.question[0], None
            return self._take(decision, now)
        return None

    def chat_allowed(self, now: float) -> bool:
        """Whether a chat message naming the PAL gets an answer (at most max_per_minute a minute)."""
        if self.chats.recent(now) >= self.max_per_minute:
            return False
        self.chats.add(now)
        return True

    def _take(self, decision: Decision, now: float) -> Decision | None:
        if self.turns.recent(now) >= self.max_per_minute and decision.act is Act.ANSWER:
            return None
        self.turns.add(now)
        self.talking = True
        self.turn_started = now
        return decision
