"""READ: Meet's live captions as caption lines (pure tracker) plus the CDP reader around it.

The page script (captions_js.py) sends the captions region's rows as they are now: one
``{node, speaker, text}`` per row, `node` a stable per-DOM-node id. Meet keeps rewriting a row as
it recognises more, re-renders nodes, briefly empties the region and cuts long monologues from
the front. ``CaptionTracker`` (pure, injectable clock) turns those snapshots into lines
(shared notes meet-media.md, READ):

* rows are keyed by (node, speaker); rows without a speaker (notices) and rows labelled "You"
  (the PAL's own speech) are dropped;
* the part of a row not yet committed is the current line: each change is emitted as a partial
  (``final=False``, same ``line_id``); the line is committed (``final=True``, exactly once) after
  ``settle`` s without change, when another speaker's row changes, or on ``flush()``;
* when the row grows after a commit, only the new part becomes the next line; rewrites of the
  committed part (punctuation, corrected words) are aligned away with difflib;
* a row that disappears and comes back as a new node of the same speaker with the same (or a
  grown) text within ``adopt_within`` s continues the old row instead of repeating it;
* a sudden large shrink means Meet cut the front of a long monologue: the pending line is
  committed and only what follows the old text's tail counts as new.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher
from typing import Any

from nodriver import cdp

from . import captions_js
from .channels import Caption
from .commands import CallbackPump
from .models import utcnow

log = logging.getLogger(__name__)

SETTLE = 1.0  # s without change before a line is final
ADOPT_WITHIN = 3.0  # s a vanished row may come back as a new node
FORGET_AFTER = 10.0  # s after which a vanished, committed row is forgotten
SHRINK_RATIO = 0.5  # new text shorter than this share of the old ...
SHRINK_MIN = 80  # ... of at least this many characters: Meet cut the monologue
SELF_NAMES = ("you",)
_LEAD = " \t.,;:!?-\u2026"


def clean(s: Any) -> str:
    return re.sub(r"\s+", " ", str(s or "")).strip()


def _similar(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    return SequenceMatcher(None, a.lower(), b.lower(), autojunk=False).ratio()


def _map_end(base: str, text: str) -> int:
    """Where in `text` the already committed `base` ends (0: `text` has nothing of it)."""
    if not base:
        return 0
    if text.startswith(base):
        return len(base)
    sm = SequenceMatcher(None, base.lower(), text.lower(), autojunk=False)
    matched = sum(b.size for b in sm.get_matching_blocks())
    if matched < 0.6 * len(base):  # not a rewrite of the old text: all of it is new
        return 0
    end = len(base)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if i1 <= end <= i2 and (i1 < end or tag == "equal"):
            return j1 + (end - i1) if tag == "equal" else j2
    return len(text)


def _tail_overlap(old: str, text: str) -> int:
    """Length of the head of `text` that repeats the end of `old` (after Meet cut the front)."""
    sm = SequenceMatcher(None, old.lower(), text.lower(), autojunk=False)
    m = sm.find_longest_match(0, len(old), 0, len(text))
    if m.size >= min(10, len(text)) and m.a + m.size >= len(old) - 3:
        return m.b + m.size
    return 0


@dataclass
class _Row:
    speaker: str
    full: str = ""  # the row's whole text as last seen
    base: str = ""  # the row's text as of the last commit
    line_id: str | None = None  # the pending line, if any
    text: str = ""  # the pending line's text
    started: datetime | None = None
    changed: datetime | None = None
    present: bool = True
    gone_at: datetime | None = None


class CaptionTracker:
    """Snapshots of the captions region in, caption lines out (see module doc)."""

    def __init__(self, clock: Callable[[], datetime] = utcnow, *, settle: float = SETTLE,
                 adopt_within: float = ADOPT_WITHIN, forget_after: float = FORGET_AFTER,
                 self_names: Iterable[str] = SELF_NAMES, id_prefix: str = "c") -> None:
        self.clock = clock
        self.settle = settle
        self.adopt_within = adopt_within
        self.forget_after = forget_after
        self.self_names = {n.lower() for n in self_names}
        self.id_prefix = id_prefix
        self._rows: dict[tuple[str, str], _Row] = {}
        self._n = 0

    # --- input -------------------------------------------------------------------------
    def update(self, rows: Iterable[Mapping[str, Any]]) -> list[Caption]:
        """One snapshot of the region (all rows, top to bottom); returns the captions it yields."""
        now = self.clock()
        out: list[Caption] = []
        present: set[tuple[str, str]] = set()
        for r in rows:
            speaker, text = clean(r.get("speaker")), clean(r.get("text"))
            if not speaker or not text or speaker.lower() in self.self_names:
                continue  # notices have no speaker; "You" is the PAL itself
            key = (str(r.get("node", "")), speaker)
            if key in present:
                continue
            present.add(key)
            row = self._rows.get(key)
            if row is None:
                row = self._adopt(speaker, text, now) or _Row(speaker)
                self._rows[key] = row
            row.present, row.gone_at = True, None
            if text == row.full:
                continue
            out += self._commit_others(speaker, now)
            out += self._apply(row, text, now)
        for key, row in self._rows.items():
            if key not in present and row.present:
                row.present, row.gone_at = False, now
        out += self.tick()
        return out

    def tick(self) -> list[Caption]:
        """Commit lines that settled; forget rows long gone. Call every ~250 ms."""
        now = self.clock()
        out: list[Caption] = []
        for key, row in list(self._rows.items()):
            if row.line_id is not None and row.changed is not None and \
                    (now - row.changed).total_seconds() >= self.settle:
                out += self._commit(row)
            if not row.present and row.line_id is None and row.gone_at is not None and \
                    (now - row.gone_at).total_seconds() >= self.forget_after:
                del self._rows[key]
        return out

    def flush(self) -> list[Caption]:
        """Commit every pending line (the call is over)."""
        out: list[Caption] = []
        for row in self._rows.values():
            out += self._commit(row)
        return out

    # --- rules -------------------------------------------------------------------------
    def _adopt(self, speaker: str, text: str, now: datetime) -> _Row | None:
        """A vanished row of `speaker` whose text this new node repeats or grows (re-render)."""
        best: tuple[datetime, tuple[str, str]] | None = None
        for key, row in self._rows.items():
            if row.present or row.speaker != speaker or row.gone_at is None or not row.full:
                continue
            if (now - row.gone_at).total_seconds() > self.adopt_within:
                continue
            head = text[: len(row.full)]
            if text.startswith(row.full) or row.full.startswith(text) or _similar(head, row.full) >= 0.8:
                if best is None or row.gone_at > best[0]:
                    best = (row.gone_at, key)
        return self._rows.pop(best[1]) if best else None

    def _commit_others(self, speaker: str, now: datetime) -> list[Caption]:
        out: list[Caption] = []
        for row in self._rows.values():
            if row.speaker != speaker and row.line_id is not None:
                out += self._commit(row)
        return out

    def _apply(self, row: _Row, text: str, now: datetime) -> list[Caption]:
        out: list[Caption] = []
        old = row.full
        if len(old) >= SHRINK_MIN and len(text) < SHRINK_RATIO * len(old) and not old.startswith(text):
            out += self._commit(row)  # Meet cut the front of a long monologue
            row.base = text[: _tail_overlap(old, text)]
        row.full = text
        rest = text[_map_end(row.base, text):].lstrip(_LEAD) if row.base else text
        if not rest or rest == row.text:
            return out
        if row.line_id is None:
            self._n += 1
            row.line_id, row.started = f"{self.id_prefix}{self._n}", now
        row.text, row.changed = rest, now
        assert row.started is not None
        out.append(Caption(row.speaker, rest, False, row.started, row.line_id))
        return out

    def _commit(self, row: _Row) -> list[Caption]:
        if row.line_id is None:
            return []
        assert row.started is not None
        cap = Caption(row.speaker, row.text, True, row.started, row.line_id)
        row.base, row.line_id, row.text, row.started, row.changed = row.full, None, "", None, None
        return [cap]


def parse_rows(payload: str) -> list[dict[str, Any]] | None:
    """The rows of one binding payload ``{"k":"rows","rows":[...]}``; None when it is not one."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("k") != "rows" or not isinstance(data.get("rows"), list):
        return None
    return [r for r in data["rows"][:200] if isinstance(r, dict)]


class CaptionReader:
    """Wires a CaptionTracker to the page: binding, hook script, 250 ms tick, guarded callback."""

    def __init__(self, on_caption: Callable[[Caption], Any] | None, *,
                 clock: Callable[[], datetime] = utcnow, tick: float = 0.25) -> None:
        self.binding = captions_js.BINDING
        self.tracker = CaptionTracker(clock)
        self.pump: CallbackPump[Caption] = CallbackPump(on_caption, name="meet-captions")
        self.tick_every = tick
        self.bad = 0
        self._tab: Any = None
        self._ticker: asyncio.Task[None] | None = None

    async def install(self, session: Any) -> None:
        """Before navigating: binding + script (the script only reads; turning captions on is
        turn_on())."""
        self._tab = session.tab
        self._tab.add_handler(cdp.runtime.BindingCalled, self._on_binding)
        await session.cdp(cdp.page.enable())
        await session.cdp(cdp.runtime.enable())
        await session.cdp(cdp.runtime.add_binding(self.binding))
        await session.cdp(cdp.page.add_script_to_evaluate_on_new_document(captions_js.READ_SCRIPT))
        self._ticker = asyncio.create_task(self._tick(), name="meet-captions-tick")

    def _on_binding(self, event: Any, _connection: Any = None) -> None:
        if event.name != self.binding:
            return
        rows = parse_rows(event.payload)
        if rows is None:
            self.bad += 1
            return
        self._emit(self.tracker.update(rows))

    def _emit(self, caps: list[Caption]) -> None:
        for cap in caps:
            self.pump.put(cap)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_every)
            self._emit(self.tracker.tick())

    async def turn_on(self, session: Any, *, tries: int = 4, wait: float = 2.0) -> bool:
        """Click "Turn on captions" until "Turn off captions" shows (or it already does)."""
        for _ in range(tries):
            state = await session.evaluate(captions_js.TURN_ON_JS)
            if state == "on":
                return True
            if state == "clicked":
                end = asyncio.get_running_loop().time() + wait
                while asyncio.get_running_loop().time() < end:
                    await asyncio.sleep(0.2)
                    if await session.evaluate(captions_js.IS_ON_JS) == "on":
                        return True
            else:
                await asyncio.sleep(0.5)
        return False

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(BaseException):
                await self._ticker
        if self._tab is not None:
            with contextlib.suppress(Exception):
                self._tab.remove_handler(cdp.runtime.BindingCalled, self._on_binding)
        self._emit(self.tracker.flush())
        await self.pump.close()
