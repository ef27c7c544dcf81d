"""Page-side JavaScript of CHAT: messages out through a CDP binding, and the send action.

READ_SCRIPT (installed before navigating, top frame only) scans ``[data-message-id]`` every
250 ms and on mutations of the side panel, skipping pin buttons that carry the same attribute.
Each new message id is sent once as ``{"k":"chat","id","sender","time","text"}``. Sender and time
come from the group header: the nearest earlier sibling without messages, looked for while
climbing from the item (climbing stops at a sibling that holds another group's header).
The PAL's own messages have no header (sender ""); Python matches them against sent text.
Messages exist only while the chat panel is open (shared notes meet-media.md, CHAT).
"""

from __future__ import annotations

import json

BINDING = "__palMeetingChat"
MAX_CHARS = 500  # per message, as joinly caps it

READ_SCRIPT = r"""
(() => {
  'use strict';
  if (window.top !== window) return;
  const KEY = Symbol.for('pal.chat');
  if (window[KEY]) return;
  const BINDING = __BINDING__;
  const st = {sent: 0, seen: new Set(), panel: null, observer: null, pending: false};
  Object.defineProperty(window, KEY, {value: st});
  const clean = (s) => String(s || '').replace(/\s+/g, ' ').trim();
  const isButton = (el) => !!el.closest('button,[role="button"]');
  const items = (root) => [...root.querySelectorAll('[data-message-id]')].filter((el) => !isButton(el));
  const textOf = (item) => {
    const c = item.cloneNode(true);
    c.querySelectorAll('button,[role="button"]').forEach((b) => b.remove());
    return clean(c.textContent);
  };
  // Text outside any message: a group header (sender, time), so a sibling holding it is another group.
  const ownText = (el) => [...el.querySelectorAll('*')].some((e) =>
    !e.children.length && !e.closest('[data-message-id]') && clean(e.innerText));
  const header = (item) => {
    let el = item;
    for (let depth = 0; depth < 8 && el.parentElement; depth++) {
      if (el.matches('[role="list"],[role="feed"]')) return null;  // never outside the message list
      const parent = el.parentElement;
      if (parent === document.body || parent.matches('aside,[role="complementary"]')) return null;
      for (let sib = el.previousElementSibling; sib; sib = sib.previousElementSibling) {
        if (sib.matches('[data-message-id]') || items(sib).length) { if (ownText(sib)) return null; continue; }
        if (clean(sib.innerText)) return sib;
      }
      el = parent;
    }
    return null;
  };
  const scan = () => {
    st.pending = false;
    const panel = document.querySelector('aside[aria-label="Side panel"]') || null;
    if (panel !== st.panel) {
      if (st.observer) st.observer.disconnect();
      st.panel = panel; st.observer = null;
      if (panel) {
        st.observer = new MutationObserver(() => { if (!st.pending) { st.pending = true; setTimeout(scan, 50); } });
        st.observer.observe(panel, {childList: true, subtree: true, characterData: true});
      }
    }
    const send = window[BINDING];
    if (typeof send !== 'function') return;
    for (const item of items(document)) {
      const id = item.getAttribute('data-message-id');
      if (!id || st.seen.has(id)) continue;
      const text = textOf(item);
      if (!text) continue;
      const h = header(item);
      let parts = [];
      if (h) {
        parts = [...h.children].map((c) => clean(c.innerText)).filter(Boolean);
        if (!parts.length) parts = String(h.innerText || '').split('\n').map(clean).filter(Boolean);
      }
      try {
        send(JSON.stringify({k: 'chat', id, sender: parts[0] || '', time: parts[1] || '', text}));
        st.seen.add(id); st.sent++;
      } catch (e) {}
    }
  };
  setInterval(scan, 250);
})();
""".replace("__BINDING__", json.dumps(BINDING))

_VIS = "const vis = (el) => !!el && el.getClientRects().length > 0;"

# "open" when the textarea is there; else click "Chat with everyone" ("clicked") or "missing".
OPEN_JS = "(() => {" + _VIS + r"""
  if ([...document.querySelectorAll('textarea[aria-label="Send a message"]')].some(vis)) return 'open';
  const b = [...document.querySelectorAll('button[aria-label^="Chat with everyone"]')].find(vis);
  if (!b) return 'missing';
  b.click();
  return 'clicked';
})()"""

IS_OPEN_JS = "(() => {" + _VIS + r"""
  return [...document.querySelectorAll('textarea[aria-label="Send a message"]')].some(vis) ? 'open' : 'closed';
})()"""


def send_js(text: str) -> str:
    """Fill the textarea (native setter + input event), then click the enabled Send button.

    Returns 'clicked', 'no_button' (the caller presses Enter through CDP) or 'no_textarea'.
    """
    return "(async () => {" + _VIS + r"""
  const text = __TEXT__;
  const ta = [...document.querySelectorAll('textarea[aria-label="Send a message"]')].find(vis);
  if (!ta) return 'no_textarea';
  ta.focus();
  Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set.call(ta, text);
  ta.dispatchEvent(new Event('input', {bubbles: true}));
  for (let i = 0; i < 10; i++) {
    const b = [...document.querySelectorAll('button[aria-label*="Send"]')].find((el) =>
      vis(el) && !el.disabled && el.getAttribute('aria-disabled') !== 'true');
    if (b) { b.click(); return 'clicked'; }
    await new Promise((r) => setTimeout(r, 50));
  }
  ta.focus();
  return 'no_button';
})()""".replace("__TEXT__", json.dumps(text))


TEXTAREA_VALUE_JS = "(() => { const t = document.querySelector('textarea[aria-label=\"Send a message\"]');" \
                    " return t ? t.value : null; })()"
