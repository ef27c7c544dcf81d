"""Page-side JavaScript of READ: the captions region's rows out through a CDP binding.

Installed before navigating (top frame only). Every 250 ms, and right after any mutation of the
region (MutationObserver, throttled), the script reads ``[role="region"][aria-label="Captions"]``
(never a bare aria-live region: that is Meet's announcer, with join/leave notices) and, when the
rows changed, calls the binding with ``{"k":"rows","rows":[{node, speaker, text}, ...]}``.
A row is the smallest element around an avatar ``img`` that holds more than the name; the
name is the text next to the avatar and the rest is the caption. `node` is a per-element id kept
in a WeakMap (no attributes are written into Meet's DOM). Python does all the deduplication.
"""

from __future__ import annotations

import json

BINDING = "__palMeetingCaptions"
REGION_SELECTORS = ('[role="region"][aria-label="Captions"]', '[role="region"][aria-label*="aption" i]')

READ_SCRIPT = r"""
(() => {
  'use strict';
  if (window.top !== window) return;
  const KEY = Symbol.for('pal.read');
  if (window[KEY]) return;
  const BINDING = __BINDING__, SELECTORS = __SELECTORS__;
  const st = {sent: 0, scans: 0, last: '', region: null, observer: null, ids: new WeakMap(), n: 0, pending: false};
  Object.defineProperty(window, KEY, {value: st});
  const clean = (s) => String(s || '').replace(/\s+/g, ' ').trim();
  const idOf = (el) => { let id = st.ids.get(el); if (!id) { id = 'n' + (++st.n); st.ids.set(el, id); } return id; };
  const findRegion = () => { for (const s of SELECTORS) { const r = document.querySelector(s); if (r) return r; } return null; };
  const rowsOf = (region) => {
    const rows = [], seen = new Set();
    for (const img of region.querySelectorAll('img')) {
      let head = img.parentElement;
      while (head && head !== region && !clean(head.innerText)) head = head.parentElement;
      if (!head || head === region) continue;
      const name = clean(head.innerText);
      let row = head;
      while (row.parentElement && row.parentElement !== region && clean(row.innerText) === name) row = row.parentElement;
      if (row === head || seen.has(row)) continue;
      seen.add(row);
      let text = '';
      for (const child of row.children) if (!child.contains(img)) text += ' ' + (child.innerText || '');
      rows.push({node: idOf(row), speaker: name, text: clean(text)});
    }
    return rows;
  };
  const scan = () => {
    st.pending = false; st.scans++;
    const region = findRegion();
    if (region !== st.region) {
      if (st.observer) st.observer.disconnect();
      st.region = region; st.observer = null;
      if (region) {
        st.observer = new MutationObserver(() => { if (!st.pending) { st.pending = true; setTimeout(scan, 50); } });
        st.observer.observe(region, {childList: true, subtree: true, characterData: true});
      }
    }
    const rows = region ? rowsOf(region) : [];
    const msg = JSON.stringify({k: 'rows', rows});
    if (msg === st.last) return;
    const send = window[BINDING];
    if (typeof send !== 'function') return;
    try { send(msg); st.last = msg; st.sent++; } catch (e) {}
  };
  setInterval(scan, 250);
})();
""".replace("__BINDING__", json.dumps(BINDING)).replace("__SELECTORS__", json.dumps(list(REGION_SELECTORS)))

_BUTTONS = r"""
  const vis = (el) => !!el && el.getClientRects().length > 0;
  const on = [...document.querySelectorAll('button[aria-label^="Turn off captions"]')].some(vis);
"""

TURN_ON_JS = "(() => {" + _BUTTONS + r"""
  if (on) return 'on';
  const b = [...document.querySelectorAll('button[aria-label^="Turn on captions"]')].find(vis);
  if (!b) return 'missing';
  b.click();
  return 'clicked';
})()"""

IS_ON_JS = "(() => {" + _BUTTONS + " return on ? 'on' : 'off'; })()"
