"""Page-side JavaScript of the media bridge (HEAR), installed before Meet's own scripts run.

The script wraps ``RTCPeerConnection`` so every connection the page makes is remembered, takes
every remote audio track (``track`` events, plus a 1 s sweep of ``getReceivers()`` for tracks that
arrive any other way), mixes them in one ``AudioContext({sampleRate: 16000})`` (Chrome
resamples), and an AudioWorklet cuts the mono mix into int16 little-endian frames that go to
Python through a CDP binding (see pcm.py for the frame format). Senders are never tapped, so the
PAL's own voice is not in the mix. Only the top frame is hooked: Meet's connections live there.

If a Content-Security-Policy forbids the worklet's blob: module, a ScriptProcessorNode does
the same job (noted as less robust under load in shared notes meet-media.md).
"""

from __future__ import annotations

import json

from .pcm import MAX_FRAME_MS, SAMPLE_RATE

BINDING = "__palMeetingAudio"
STATE_KEY = "pal.hear"  # Symbol.for(STATE_KEY) on window holds page-side counters

_TEMPLATE = r"""
(() => {
  'use strict';
  if (window.top !== window) return;
  const KEY = Symbol.for(__STATE_KEY__);
  if (window[KEY]) return;
  const NativePC = window.RTCPeerConnection;
  if (typeof NativePC !== 'function') return;
  const BINDING = __BINDING__, RATE = __RATE__, FRAME = __FRAME__;
  const b64 = window.btoa.bind(window), stringify = JSON.stringify, fromCharCode = String.fromCharCode;
  const NativeMediaStream = window.MediaStream;
  const st = {seq: 0, sent: 0, errors: 0, unsent: 0, tracks: new Map(), pcs: new Set(), ctx: null,
              mix: null, starting: null, mode: null, sweeper: null};
  Object.defineProperty(window, KEY, {value: st});

  const emit = (buf) => {
    const send = window[BINDING];
    if (typeof send !== 'function') { st.unsent++; return; }
    const bytes = new Uint8Array(buf);
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x2000) bin += fromCharCode.apply(null, bytes.subarray(i, i + 0x2000));
    try { send(stringify({k: 'pcm', s: st.seq++, r: RATE, d: b64(bin)})); st.sent++; } catch (e) { st.errors++; }
  };

  const WORKLET = `
    class PalTap extends AudioWorkletProcessor {
      constructor(o) { super(); this.n = o.processorOptions.frame; this.buf = new Int16Array(this.n); this.i = 0; }
      process(inputs) {
        const ch = inputs[0] && inputs[0][0];
        const len = ch ? ch.length : 128;
        for (let k = 0; k < len; k++) {
          let v = ch ? ch[k] : 0;
          v = v < -1 ? -1 : (v > 1 ? 1 : v);
          this.buf[this.i++] = v < 0 ? v * 32768 : v * 32767;
          if (this.i === this.n) {
            this.port.postMessage(this.buf.buffer, [this.buf.buffer]);
            this.buf = new Int16Array(this.n); this.i = 0;
          }
        }
        return true;
      }
    }
    registerProcessor('pal-tap', PalTap);`;

  const scriptProcessorTap = (ctx) => {
    const node = ctx.createScriptProcessor(1024, 1, 1);
    let buf = new Int16Array(FRAME), i = 0;
    node.onaudioprocess = (e) => {
      const ch = e.inputBuffer.getChannelData(0);
      for (let k = 0; k < ch.length; k++) {
        let v = ch[k]; v = v < -1 ? -1 : (v > 1 ? 1 : v);
        buf[i++] = v < 0 ? v * 32768 : v * 32767;
        if (i === FRAME) { emit(buf.buffer); buf = new Int16Array(FRAME); i = 0; }
      }
    };
    return node;
  };

  const ensureGraph = () => {
    if (st.starting) return st.starting;
    st.starting = (async () => {
      const ctx = new AudioContext({sampleRate: RATE});
      const mix = ctx.createGain();
      let node;
      try {
        const url = URL.createObjectURL(new Blob([WORKLET], {type: 'text/javascript'}));
        try { await ctx.audioWorklet.addModule(url); } finally { URL.revokeObjectURL(url); }
        node = new AudioWorkletNode(ctx, 'pal-tap', {
          numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1], channelCount: 1,
          channelCountMode: 'explicit', channelInterpretation: 'speakers', processorOptions: {frame: FRAME}});
        node.port.onmessage = (e) => emit(e.data);
        st.mode = 'worklet';
      } catch (e) {
        node = scriptProcessorTap(ctx);
        st.mode = 'scriptprocessor';
      }
      const mute = ctx.createGain();
      mute.gain.value = 0;
      mix.connect(node); node.connect(mute); mute.connect(ctx.destination);
      const wake = () => { if (ctx.state === 'suspended') ctx.resume().catch(() => {}); };
      ctx.addEventListener('statechange', wake);
      wake();
      st.ctx = ctx; st.mix = mix;
    })();
    return st.starting;
  };

  const tap = (track) => {
    if (!track || track.kind !== 'audio' || track.readyState === 'ended' || st.tracks.has(track.id)) return;
    st.tracks.set(track.id, null);
    ensureGraph().then(() => {
      if (track.readyState === 'ended') { st.tracks.delete(track.id); return; }
      const src = st.ctx.createMediaStreamSource(new NativeMediaStream([track]));
      src.connect(st.mix);
      st.tracks.set(track.id, src);
      track.addEventListener('ended', () => {
        try { src.disconnect(); } catch (e) {}
        st.tracks.delete(track.id);
      });
    }).catch(() => { st.errors++; st.tracks.delete(track.id); });
  };

  const sweep = () => {
    for (const pc of st.pcs) {
      if (pc.connectionState === 'closed' || pc.signalingState === 'closed') { st.pcs.delete(pc); continue; }
      try { for (const r of pc.getReceivers()) tap(r.track); } catch (e) {}
    }
  };

  const hook = (pc) => {
    st.pcs.add(pc);
    pc.addEventListener('track', (e) => tap(e.track));
    if (!st.sweeper) st.sweeper = setInterval(sweep, 1000);
  };

  const Wrapped = new Proxy(NativePC, {
    construct(target, args, newTarget) {
      const pc = Reflect.construct(target, args, newTarget === Wrapped ? target : newTarget);
      try { hook(pc); } catch (e) { st.errors++; }
      return pc;
    },
  });
  window.RTCPeerConnection = Wrapped;
  if (window.webkitRTCPeerConnection === NativePC) window.webkitRTCPeerConnection = Wrapped;
})();
"""

# Page-side counters, for diagnostics and tests.
STATS_JS = (
    "(() => { const s = window[Symbol.for(%s)]; return JSON.stringify(s ? {seq: s.seq, sent: s.sent, "
    "errors: s.errors, unsent: s.unsent, tracks: s.tracks.size, pcs: s.pcs.size, mode: s.mode, "
    "ctx: s.ctx ? s.ctx.state : null, rate: s.ctx ? s.ctx.sampleRate : null} : {}); })()"
) % json.dumps(STATE_KEY)


def hear_script(frame_ms: int = 50, binding: str = BINDING) -> str:
    """The hook script, with `frame_ms` (1..100) of audio per binding call."""
    if not 1 <= frame_ms <= MAX_FRAME_MS:
        raise ValueError(f"frame_ms must be within 1..{MAX_FRAME_MS}")
    return (_TEMPLATE
            .replace("__STATE_KEY__", json.dumps(STATE_KEY))
            .replace("__BINDING__", json.dumps(binding))
            .replace("__RATE__", str(SAMPLE_RATE))
            .replace("__FRAME__", str(SAMPLE_RATE * frame_ms // 1000)))
