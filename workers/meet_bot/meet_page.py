"""What Google Meet's page means: a JS probe that snapshots the DOM, and pure rules over it.

The probe returns one JSON string (never a falsy value, which nodriver would hand back as a
RemoteObject). The rules match aria-labels and visible texts only (see shared notes
meet-dom.md): jsnames and CSS classes change without notice. Visible text comes from
``innerText``, which skips <script> contents, unlike nodriver's text search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

# Selectors for the name box, best first (Attendee, then Vexa's locale-agnostic one, then joinly's).
NAME_INPUT_SELECTORS: tuple[str, ...] = (
    'input[type="text"][aria-label="Your name"]',
    'input[aria-label="Your name"]',
    'input[jsname][type="text"]',
    'input[placeholder*="name" i]',
)

PROBE_JS = r"""
(() => {
  const gen = String(Date.now()) + String(Math.random()).slice(2, 8);
  const vis = (el) => {
    if (!el || !el.getClientRects().length) return false;
    const cs = getComputedStyle(el);
    return cs.visibility !== 'hidden' && cs.display !== 'none';
  };
  const clean = (s) => (s || '').replace(/\s+/g, ' ').trim().slice(0, 200);
  const dialogEls = [...document.querySelectorAll('[role="dialog"],[role="alertdialog"]')].filter(vis);
  const dialogs = dialogEls.map((d) => ({
    text: clean(d.innerText).slice(0, 500),
    modal: d.getAttribute('aria-modal') === 'true',
  }));
  const buttons = [];
  const els = [];
  for (const el of document.querySelectorAll('button,[role="button"]')) {
    if (buttons.length >= 300) break;
    if (!vis(el)) continue;
    const idx = gen + ':' + buttons.length;
    els.push(el);
    const spans = [...el.querySelectorAll('span')].map((s) => clean(s.innerText)).filter(Boolean).slice(0, 6);
    const di = dialogEls.findIndex((d) => d.contains(el));
    buttons.push({
      idx, label: clean(el.getAttribute('aria-label')), text: clean(el.innerText), spans,
      dialog: di < 0 ? null : di, action: el.getAttribute('data-mdc-dialog-action') || '',
      disabled: !!el.disabled || el.getAttribute('aria-disabled') === 'true',
    });
  }
  let nameInput = null;
  for (const sel of SELECTORS) {
    const el = [...document.querySelectorAll(sel)].find(vis);
    if (el) { nameInput = {selector: sel, value: el.value || ''}; break; }
  }
  const ids = new Set();
  for (const el of document.querySelectorAll('[data-participant-id]')) {
    if (vis(el)) ids.add(el.getAttribute('data-participant-id'));
  }
  let avatar = null;
  for (const el of document.querySelectorAll('[data-avatar-count]')) {
    const n = parseInt(el.getAttribute('data-avatar-count'), 10);
    if (!isNaN(n)) avatar = Math.max(avatar || 0, n);
  }
  // Keep references instead of tagging Meet's DOM: no attribute churn under its observers.
  window.__palProbe = {gen, els};
  const body = document.body ? document.body.innerText || '' : '';
  return JSON.stringify({
    url: location.href, ready: document.readyState, text: body.slice(0, 20000),
    h1: [...document.querySelectorAll('h1')].filter(vis).map((h) => clean(h.innerText)),
    buttons, dialogs, name_input: nameInput, participant_ids: ids.size, avatar_count: avatar,
    call_controls: !!document.querySelector('[role="region"][aria-label="Call controls"]'),
  });
})()
""".replace("SELECTORS", repr(list(NAME_INPUT_SELECTORS)))


def click_js(idx: str) -> str:
    """JS that clicks button `idx` ("gen:i") of the last probe; "gone" if the page re-rendered since."""
    gen, _, pos = idx.partition(":")
    return (
        "(() => { const p = window.__palProbe; if (!p || p.gen !== %s) return 'gone';"
        " const el = p.els[%d]; if (!el || !el.isConnected) return 'gone';"
        " el.scrollIntoView({block: 'center'}); if (el.focus) el.focus(); el.click(); return 'ok'; })()"
        % (_js_str(gen), int(pos or -1))
    )


def focus_name_js(selector: str) -> str:
    """JS that focuses and selects the name box so inserted text replaces what is there."""
    return (
        "(() => { const el = [...document.querySelectorAll(%s)].find(e => e.getClientRects().length);"
        " if (!el) return 'gone'; el.focus(); el.select(); return 'ok'; })()" % _js_str(selector)
    )


def _js_str(s: str) -> str:
    import json

    return json.dumps(s)


class Phase(str, Enum):
    """Where the page is in the join flow."""

    LOADING = "loading"
    PREJOIN = "prejoin"
    WAITING_ROOM = "waiting_room"
    IN_CALL = "in_call"
    DENIED = "denied"
    NO_RESPONSE = "no_response"
    BLOCKED = "blocked"
    INVALID = "invalid_meeting"
    SIGN_IN = "sign_in_required"
    ENDED = "meeting_ended"
    REMOVED = "removed"
    LEFT = "left"
    UNREACHABLE = "meeting_unreachable"


@dataclass(frozen=True)
class Button:
    idx: str
    label: str = ""
    text: str = ""
    spans: tuple[str, ...] = ()
    dialog: int | None = None
    action: str = ""
    disabled: bool = False

    def names(self) -> tuple[str, ...]:
        """Normalised aria-label, text and span texts: what a human would read on it."""
        return tuple(n for n in (norm(self.label), norm(self.text), *map(norm, self.spans)) if n)

    def is_named(self, *wanted: str) -> bool:
        names = self.names()
        return any(norm(w) in names for w in wanted)

    def label_starts(self, prefix: str) -> bool:
        # Meet sometimes appends the shortcut: "Turn on camera (ctrl + e)".
        return norm(self.label).startswith(norm(prefix))


@dataclass(frozen=True)
class Dialog:
    text: str = ""
    modal: bool = False


@dataclass(frozen=True)
class PageState:
    """One probe result."""

    url: str = ""
    text: str = ""
    h1: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = ()
    dialogs: tuple[Dialog, ...] = ()
    name_selector: str | None = None
    name_value: str = ""
    participant_ids: int = 0
    avatar_count: int | None = None
    call_controls: bool = False
    ready: str = "complete"
    ntext: str = field(default="", repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PageState":
        ni = data.get("name_input") or {}
        text = str(data.get("text") or "")
        return cls(
            url=str(data.get("url") or ""),
            text=text,
            h1=tuple(str(h) for h in data.get("h1") or ()),
            buttons=tuple(
                Button(
                    idx=str(b.get("idx", "")), label=b.get("label") or "", text=b.get("text") or "",
                    spans=tuple(b.get("spans") or ()), dialog=b.get("dialog"),
                    action=b.get("action") or "", disabled=bool(b.get("disabled")),
                )
                for b in data.get("buttons") or ()
            ),
            dialogs=tuple(Dialog(text=d.get("text") or "", modal=bool(d.get("modal"))) for d in data.get("dialogs") or ()),
            name_selector=ni.get("selector"),
            name_value=ni.get("value") or "",
            participant_ids=int(data.get("participant_ids") or 0),
            avatar_count=data.get("avatar_count"),
            call_controls=bool(data.get("call_controls")),
            ready=str(data.get("ready") or ""),
            ntext=norm(text),
        )

    def has_text(self, *phrases: str) -> bool:
        return any(norm(p) in self.ntext for p in phrases)

    def find_button(self, *names: str, in_dialog: bool | None = None) -> Button | None:
        """First enabled button carrying one of `names`, trying `names` in order of preference."""
        for name in names:
            for b in self.buttons:
                if b.disabled or (in_dialog is not None and (b.dialog is not None) != in_dialog):
                    continue
                if b.is_named(name):
                    return b
        return None


def norm(s: str) -> str:
    """Lower-case, typographic quotes and ellipsis made plain, whitespace collapsed."""
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("\u2026", "...").replace("\xa0", " ")
    return re.sub(r"\s+", " ", s).strip().lower()


# --- texts (meet-dom.md) --------------------------------------------------------------------
REMOVED_TEXTS = ("You've been removed from the meeting", "You have been removed from the meeting")
ENDED_LONG_TEXTS = ("Your host ended the meeting for everyone", "The host ended the meeting for everyone")
# Short phrases could also appear in chat or captions, so they count only once the call UI is gone.
ENDED_SHORT_TEXTS = ("The call ended", "Meeting ended", "Call ended", "The meeting has ended")
DENIED_TEXTS = ("Someone in the call denied your request to join", "denied your request to join")
NO_RESPONSE_TEXTS = ("No one responded to your request to join the call", "No one responded to your request")
LEFT_TEXTS = ("You left the meeting", "You left the call")
BLOCKED_TEXTS = ("You can't join this video call", "You can't join this meeting",
                 "There is a problem connecting to this video call")
INVALID_TEXTS = ("Check your meeting code", "Invalid video call name", "Your meeting code has expired",
                 "The meeting code you entered doesn't work", "This meeting code is invalid")
WAITING_TEXTS = ("Asking to be let in", "You'll join the call when someone lets you in",
                 "Please wait until a meeting host brings you into the call",
                 "admits you to the call", "Waiting for the host to join")

JOIN_BUTTONS = ("Join now", "Ask to join", "Ask to join anyway", "Join anyway",
                "Join the call now", "Join here too", "Switch here")
# Clicking these would drop our camera and mic: the whole point of the bot is to show them.
NEVER_CLICK = ("Continue without microphone and camera", "Continue without microphone",
               "Continue without camera")
INTERSTITIAL_BUTTONS = ("Allow microphone and camera", "Use microphone and camera", "Got it",
                        "Dismiss", "Close", "OK", "No thanks")
NOTICE_BUTTONS = ("Join now", "Got it", "OK", "Continue", "Accept", "Dismiss", "Close")


def in_call_score(s: PageState) -> int:
    """Count of signs only the admitted call shows (the lobby also shows Leave, mic and camera)."""
    captions = any(b.label_starts("Turn on captions") or b.label_starts("Turn off captions") for b in s.buttons)
    chat = any(b.label_starts("Chat with everyone") for b in s.buttons)
    return int(captions) + int(chat) + int(s.participant_ids > 0) + int(s.call_controls)


def _is_sign_in(s: PageState) -> bool:
    host = urlsplit(s.url).hostname or ""
    if host.startswith("accounts.google."):
        return True
    return any(norm(h) == "sign in" for h in s.h1) and s.has_text("Google Account")


def classify(s: PageState) -> Phase:
    """The phase of the join flow this snapshot shows; order matters (see comments)."""
    # Chromium's own network error page (DNS, TLS, offline): Meet never loaded, so no
    # join button will ever appear; say so at once instead of after the pre-join timeout.
    if s.url.startswith("chrome-error://"):
        return Phase.UNREACHABLE
    score = in_call_score(s)
    # Long, specific phrases win even over call UI that may linger during the transition.
    if s.has_text(*REMOVED_TEXTS):
        return Phase.REMOVED
    if s.has_text(*ENDED_LONG_TEXTS):
        return Phase.ENDED
    in_call = any(b.label_starts("Turn on captions") or b.label_starts("Turn off captions") for b in s.buttons) \
        or score >= 2
    waiting = s.has_text(*WAITING_TEXTS)
    if in_call and (not waiting or score >= 3):
        return Phase.IN_CALL
    if s.has_text(*DENIED_TEXTS):
        return Phase.DENIED
    if s.has_text(*NO_RESPONSE_TEXTS):
        return Phase.NO_RESPONSE
    if s.has_text(*ENDED_SHORT_TEXTS):
        return Phase.ENDED
    if s.has_text(*LEFT_TEXTS):
        return Phase.LEFT
    if s.has_text(*BLOCKED_TEXTS):
        return Phase.BLOCKED
    if s.has_text(*INVALID_TEXTS):
        return Phase.INVALID
    if _is_sign_in(s):
        return Phase.SIGN_IN
    # Waiting room before pre-join: the lobby keeps showing mic/camera toggles.
    if waiting:
        return Phase.WAITING_ROOM
    if join_button(s) is not None or s.name_selector is not None or s.find_button(*JOIN_BUTTONS, in_dialog=None):
        return Phase.PREJOIN
    return Phase.LOADING


def join_button(s: PageState) -> Button | None:
    """The join button outside any dialog, in order of preference."""
    return s.find_button(*JOIN_BUTTONS, in_dialog=False)


def blocking_dialog(s: PageState) -> bool:
    """A visible modal dialog sits in front of the pre-join screen."""
    return any(d.modal for d in s.dialogs)


def interstitial_button(s: PageState) -> Button | None:
    """What to click to get an interstitial out of the way, never one that drops media."""
    b = s.find_button("Use without an account")
    if b is not None:
        return b
    if not s.dialogs:
        return None
    for name in INTERSTITIAL_BUTTONS:
        for b in s.buttons:
            if b.dialog is None or b.disabled or any(b.is_named(n) for n in NEVER_CLICK):
                continue
            if b.is_named(name):
                return b
    return None


def media_buttons_to_turn_on(s: PageState) -> list[tuple[Button, str]]:
    """(button, label prefix that proves it worked) for each device that is off."""
    out: list[tuple[Button, str]] = []
    for off_label, on_label in (("Turn on camera", "Turn off camera"), ("Turn on microphone", "Turn off microphone")):
        b = next((b for b in s.buttons if not b.disabled and b.label_starts(off_label)), None)
        if b is not None:
            out.append((b, on_label))
    return out


def has_button_label(s: PageState, prefix: str) -> bool:
    return any(b.label_starts(prefix) for b in s.buttons)


def notice_button(s: PageState) -> Button | None:
    """The accept button of a post-admission modal (recording, transcription, notetaker notices)."""
    modal = [i for i, d in enumerate(s.dialogs) if d.modal]
    if not modal:
        return None
    for b in s.buttons:
        if b.dialog in modal and b.action == "ok" and not b.disabled:
            return b
    for name in NOTICE_BUTTONS:
        for b in s.buttons:
            if b.dialog in modal and not b.disabled and b.is_named(name) and not b.is_named(*NEVER_CLICK):
                return b
    return None


def leave_button(s: PageState) -> Button | None:
    return next((b for b in s.buttons if b.label_starts("Leave call")), None)


def participant_count(s: PageState) -> int | None:
    """People in the call including the PAL, or None when the page does not tell."""
    n = max(s.participant_ids, s.avatar_count or 0)
    return n or None
