"""Page-side JavaScript of SPEAK: the PAL's microphone is audio that Python feeds in.

Installed before Meet's scripts (Page.addScriptToEvaluateOnNewDocument), top frame only. It
replaces ``MediaDevices.prototype.getUserMedia``: a request with ``audio`` gets the real (fake
capture) camera for its ``video`` part, if any, plus a ``clone()`` of one track of an
``AudioContext({sampleRate: 16000}) → AudioWorkletNode → MediaStreamAudioDestinationNode`` graph
(Meet stops tracks on mute and asks again on unmute; every call gets a fresh clone).

The worklet is a ring buffer (10 s) of what Python sent. Python calls ``feed(base64)`` with chunks
of at most 100 ms and paces them by the queue length each call returns, so only ~100–200 ms wait
in the page; ``flush()`` drops the queue at once (barge-in), with a 4 ms fade so it does not click.
When the queue runs dry the worklet plays silence. Control lives on ``window[Symbol.for(KEY)]``:
no global name, no network request.
"""

from __future__ import annotations

import json

from .pcm import SAMPLE_RATE

STATE_KEY = "pal.speak"
RING_SECONDS = 10

_TEMPLATE = r"""
(() => {
  'use strict';
  if (window.top !== window) return;
  const KEY = Symbol.for(__STATE_KEY__);
  if (window[KEY]) return;
  const MD = window.MediaDevices;
  if (!MD || typeof MD.prototype.getUserMedia !== 'function') return;
  const RATE = __RATE__, CAP = __CAP__;
  const origGUM = MD.prototype.getUserMedia;
  const atob = window.atob.bind(window);
  const st = {posted: 0, seen: 0, q: 0, played: 0, dropped: 0, dry: 0, flushes: 0, gum: 0, clones: 0,
              errors: 0, ctx: null, node: null, dest: null, starting: null, lastError: ''};

  const WORKLET = `
    class PalSpeak extends AudioWorkletProcessor {
      constructor(o) {
        super();
        this.buf = new Float32Array(o.processorOptions.capacity);
        this.r = 0; this.w = 0; this.n = 0; this.seen = 0; this.played = 0; this.dropped = 0;
        this.dry = 0; this.flushes = 0; this.playing = false; this.tick = 0;
        this.port.onmessage = (e) => {
          const m = e.data;
          if (m.pcm) this.push(new Int16Array(m.pcm), m.upto);
          else if (m.flush) this.flush(m.upto);
        };
      }
      push(s, upto) {
        const cap = this.buf.length;
        for (let i = 0; i < s.length; i++) {
          if (this.n === cap) { this.r = (this.r + 1) % cap; this.n--; this.dropped++; }
          this.buf[this.w] = s[i] / 32768; this.w = (this.w + 1) % cap; this.n++;
        }
        this.seen = upto; this.report();
      }
      flush(upto) {
        // Keep 4 ms, faded out, so the cut does not click; drop the rest.
        const cap = this.buf.length, keep = Math.min(this.n, 64);
        for (let i = 0; i < keep; i++) this.buf[(this.r + i) % cap] *= 1 - (i + 1) / keep;
        this.dropped += this.n - keep; this.n = keep; this.w = (this.r + keep) % cap;
        this.seen = upto; this.flushes++; this.report();
      }
      report() {
        this.port.postMessage({q: this.n, seen: this.seen, played: this.played, dropped: this.dropped,
                               dry: this.dry, flushes: this.flushes});
      }
      process(inputs, outputs) {
        const out = outputs[0][0], cap = this.buf.length;
        let k = 0;
        for (; k < out.length && this.n > 0; k++) { out[k] = this.buf[this.r]; this.r = (this.r + 1) % cap; this.n--; }
        this.played += k;
        if (k > 0) this.playing = true;
        for (let j = k; j < out.length; j++) out[j] = 0;
        if (k < out.length && this.playing) { this.playing = false; this.dry++; this.report(); }
        else if (this.n > 0 && ++this.tick % 4 === 0) this.report();
        return true;
      }
    }
    registerProcessor('pal-speak', PalSpeak);`;

  const ensureGraph = () => {
    if (st.starting) return st.starting;
    st.starting = (async () => {
      const ctx = new AudioContext({sampleRate: RATE});
      const url = URL.createObjectURL(new Blob([WORKLET], {type: 'text/javascript'}));
      try { await ctx.audioWorklet.addModule(url); } finally { URL.revokeObjectURL(url); }
      const node = new AudioWorkletNode(ctx, 'pal-speak', {
        numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: {capacity: CAP}});
      node.port.onmessage = (e) => {
        const m = e.data;
        st.q = m.q; st.seen = m.seen; st.played = m.played; st.dropped = m.dropped; st.dry = m.dry; st.flushes = m.flushes;
      };
      const dest = ctx.createMediaStreamDestination();
      dest.channelCount = 1;
      node.connect(dest);
      const mute = ctx.createGain();
      mute.gain.value = 0;
      node.connect(mute); mute.connect(ctx.destination);  // keeps the context rendering
      const wake = () => { if (ctx.state === 'suspended') ctx.resume().catch(() => {}); };
      ctx.addEventListener('statechange', wake);
      wake();
      st.ctx = ctx; st.node = node; st.dest = dest;
    })();
    st.starting.catch((e) => { st.errors++; st.lastError = String(e); st.starting = null; });
    return st.starting;
  };

  const queued = () => Math.max(0, st.q + (st.posted - st.seen));

  Object.defineProperty(window, KEY, {value: {
    state: st,
    // One chunk (base64 int16 LE mono at RATE, at most 100 ms) after what is queued; returns the
    // samples now waiting in the page.
    async feed(b64) {
      await ensureGraph();
      const bin = atob(b64), n = bin.length >> 1;
      const bytes = new Uint8Array(n * 2);
      for (let i = 0; i < n * 2; i++) bytes[i] = bin.charCodeAt(i);
      st.posted += n;
      st.node.port.postMessage({pcm: bytes.buffer, upto: st.posted}, [bytes.buffer]);
      return queued();
    },
    async flush() {
      if (!st.node) return 0;
      st.node.port.postMessage({flush: true, upto: st.posted});
      st.q = 0; st.seen = st.posted;
      return 0;
    },
    queued,
    stats() {
      return JSON.stringify({posted: st.posted, queued: queued(), played: st.played, dropped: st.dropped,
        dry: st.dry, flushes: st.flushes, gum: st.gum, clones: st.clones, errors: st.errors,
        last_error: st.lastError, ctx: st.ctx ? st.ctx.state : null, rate: st.ctx ? st.ctx.sampleRate : null});
    },
  }});

  const getUserMedia = function getUserMedia(constraints) {
    st.gum++;
    if (!constraints || !constraints.audio) return origGUM.call(this, constraints);
    const rest = Object.assign({}, constraints);
    delete rest.audio;
    const self = this;
    return (async () => {
      const stream = rest.video ? await origGUM.call(self, rest) : new MediaStream();
      await ensureGraph();
      const track = st.dest.stream.getAudioTracks()[0].clone();
      st.clones++;
      stream.addTrack(track);
      return stream;
    })();
  };
  Object.defineProperty(MD.prototype, 'getUserMedia', {value: getUserMedia, writable: true, configurable: true});
})();
"""

# The Meet mic button, by aria-label (meet-dom.md; Meet may append the shortcut, so a prefix match).
MIC_STATE_JS = r"""
(() => {
  const vis = (el) => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden';
  const norm = (s) => (s || '').replace(/\s+/g, ' ').trim().toLowerCase();
  for (const el of document.querySelectorAll('button,[role="button"]')) {
    const l = norm(el.getAttribute('aria-label'));
    if (!vis(el)) continue;
    if (l.startsWith('turn off microphone')) return 'on';
    if (l.startsWith('turn on microphone')) return 'off';
  }
  return 'none';
})()
"""


def mic_click_js(want_on: bool) -> str:
    """JS that clicks the mic button if it is in the other state: 'clicked', 'already' or 'none'."""
    prefix, already = ("turn on microphone", "turn off microphone") if want_on else \
        ("turn off microphone", "turn on microphone")
    return (
        "(() => { const norm = (s) => (s || '').replace(/\\s+/g, ' ').trim().toLowerCase();"
        " const vis = (el) => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden';"
        " let seen = false;"
        " for (const el of document.querySelectorAll('button,[role=\"button\"]')) {"
        "  if (!vis(el) || el.disabled) continue; const l = norm(el.getAttribute('aria-label'));"
        "  if (l.startsWith(%s)) { el.click(); return 'clicked'; }"
        "  if (l.startsWith(%s)) seen = true; }"
        " return seen ? 'already' : 'none'; })()" % (json.dumps(prefix), json.dumps(already))
    )


def _control(call: str) -> str:
    return "window[Symbol.for(%s)].%s" % (json.dumps(STATE_KEY), call)


def feed_js(b64: str) -> str:
    return _control("feed(%s)" % json.dumps(b64))


FLUSH_JS = _control("flush()")
QUEUED_JS = _control("queued()")
STATS_JS = "(() => { const c = window[Symbol.for(%s)]; return c ? c.stats() : '{}'; })()" % json.dumps(STATE_KEY)


def speak_script(ring_seconds: int = RING_SECONDS) -> str:
    """The getUserMedia override and ring-buffer worklet, for addScriptToEvaluateOnNewDocument."""
    return (_TEMPLATE
            .replace("__STATE_KEY__", json.dumps(STATE_KEY))
            .replace("__RATE__", str(SAMPLE_RATE))
            .replace("__CAP__", str(SAMPLE_RATE * ring_seconds)))
