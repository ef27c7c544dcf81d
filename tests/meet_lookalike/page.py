"""The look-alike Meet page: texts and aria-labels from shared notes meet-dom.md.

One static page plays every scenario; it fetches its scenario from /__scenario/<code> and posts
what happened to /__report/<code>. The script deliberately contains every end-screen phrase, so a
bot that matched text inside <script> would misread the pre-join screen.
"""

PAGE_HTML = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Meet</title>
<style>
body { font-family: sans-serif; margin: 0; }
.hidden { display: none !important; }
[role=dialog] { position: fixed; inset: 20% 25%; background: #fff; border: 1px solid #888; padding: 1em; z-index: 10; }
.tile { display: inline-block; width: 160px; height: 90px; border: 1px solid #444; margin: 4px; }
#callcontrols { position: fixed; bottom: 0; left: 0; right: 0; }
</style></head>
<body>
<div id="root"></div>
<canvas id="probe" width="64" height="48" class="hidden"></canvas>
<div id="media" class="hidden"></div>
<script>
(async () => {
  const code = location.pathname.replace(/^\//, '').split('/')[0];
  const root = document.getElementById('root');
  let sc = {};
  try { sc = await (await fetch('/__scenario/' + code)).json(); } catch (e) {}
  const state = { cam: !!sc.camera_on, mic: !!sc.mic_on, phase: 'prejoin', dialog: false, declined: false };
  const report = (event, data) => fetch('/__report/' + code, {
    method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify(Object.assign({event}, data || {})),
  }).catch(() => {});
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  const html = (s) => { root.innerHTML = s; };
  report('page_loaded', {url: location.href});

  const endScreen = (title, detail, buttons) => {
    state.phase = 'ended';
    const extrasEl = document.getElementById('extras'); if (extrasEl) extrasEl.remove();  // captions, chat
    html('<div><h1>' + esc(title) + '</h1><p>' + esc(detail || '') + '</p>' +
      (buttons || ['Return to home screen']).map((b) => '<button>' + esc(b) + '</button>').join('') + '</div>');
  };
  if (sc.scenario === 'invalid') {
    return endScreen('Check your meeting code', 'Make sure you entered the correct meeting code in the URL, for example: https://meet.google.com/xxx-yyyy-zzz');
  }
  if (sc.scenario === 'sign_in') {
    return html('<h1>Sign in</h1><p>to continue to Google Meet. Use your Google Account.</p><input type="email" aria-label="Email or phone"><button>Next</button>');
  }

  // ---------- pre-join ----------
  const camLabel = () => state.cam ? 'Turn off camera' : 'Turn on camera';
  const micLabel = () => state.mic ? 'Turn off microphone' : 'Turn on microphone';
  const joinText = sc.scenario === 'join_now' ? 'Join now' : 'Ask to join';
  const dialogHtml = {
    media_choice: '<div role="dialog" aria-modal="true" id="inter"><h2>Do you want people to see and hear you in the meeting?</h2>' +
      '<p>You can still turn off your microphone and camera anytime in the meeting.</p>' +
      '<button id="inter-decline"><span>Continue without microphone and camera</span></button>' +
      '<button id="inter-dismiss" aria-label="Dismiss"><span>close</span></button></div>',
    got_it: '<div role="dialog" aria-modal="true" id="inter"><h2>Others may see your video differently</h2>' +
      '<button id="inter-dismiss"><span>Got it</span></button></div>',
  }[sc.interstitial] || '';
  html('<div id="prejoin"><h2>Ready to join?</h2>' +
    '<div id="preview-box" class="tile"></div>' +
    '<button id="mic" aria-label="' + micLabel() + '"><i>mic</i></button>' +
    '<button id="cam" aria-label="' + camLabel() + '"><i>videocam</i></button>' +
    '<div>What\'s your name?</div><input type="text" aria-label="Your name" placeholder="Your name" id="name">' +
    '<button id="join" disabled><span>' + joinText + '</span></button>' +
    '<button><span>Other ways to join</span></button></div>' + dialogHtml);
  const $ = (id) => document.getElementById(id);
  const nameBox = $('name');
  nameBox.addEventListener('input', () => { $('join').disabled = !nameBox.value.trim(); });
  const toggle = (which) => {
    if (state.declined) return;  // devices were declined in the interstitial
    setTimeout(async () => {  // Meet flips the label only after the device answers
      if (which === 'mic' && state.phase === 'call' && stream) await micDevice(!state.mic);
      state[which] = !state[which];
      document.querySelectorAll('#' + which).forEach((b) =>
        b.setAttribute('aria-label', which === 'cam' ? camLabel() : micLabel()));
      report('toggle', {device: which, on: state[which]});
    }, 150);
  };
  $('mic').onclick = () => toggle('mic');
  $('cam').onclick = () => toggle('cam');
  if ($('inter')) {
    state.dialog = true;
    $('inter-dismiss').onclick = () => { state.dialog = false; $('inter').remove(); report('interstitial', {clicked: 'dismiss'}); };
    const decline = $('inter-decline');
    if (decline) decline.onclick = () => {
      state.dialog = false; state.declined = true; state.cam = false; state.mic = false;
      $('inter').remove(); report('interstitial', {clicked: 'continue_without_media'});
    };
  }
  $('join').onclick = () => {
    if (state.dialog) { report('join_blocked_by_dialog'); return; }  // the modal is in front
    if (!nameBox.value.trim()) return;
    report('join_clicked', {name: nameBox.value, button: joinText, camera_on: state.cam, mic_on: state.mic});
    if (sc.scenario === 'blocked') {
      return endScreen("You can\u2019t join this video call", 'Return to home screen');
    }
    if (sc.scenario === 'join_now') return enterCall();
    waitingRoom();
  };

  // ---------- waiting room ----------
  const controls = (inCall) => '<div id="callcontrols"' + (inCall ? ' role="region" aria-label="Call controls"' : '') + '>' +
    '<button id="mic" aria-label="' + micLabel() + '"><i>mic</i></button>' +
    '<button id="cam" aria-label="' + camLabel() + '"><i>videocam</i></button>' +
    (inCall ? (sc.no_captions ? '' : '<button aria-label="' + (state.captions ? 'Turn off captions' : 'Turn on captions') + '"><i>closed_caption</i></button>') +
      '<button aria-label="Raise hand (ctrl + alt + h)"><i>back_hand</i></button>' +
      '<button aria-label="Chat with everyone"><i>chat</i></button>' +
      '<button aria-label="People"><i>people</i><span data-avatar-count="' + (1 + others()) + '"></span></button>' : '') +
    '<button id="leave" aria-label="Leave call"><i>call_end</i></button></div>';
  let otherCount = sc.participants === undefined ? 2 : sc.participants;
  const others = () => otherCount;
  const wireControls = (phase) => {
    $('mic').onclick = () => toggle('mic');
    $('cam').onclick = () => toggle('cam');
    $('leave').onclick = () => {
      report('leave_clicked', {phase});
      stopMedia();
      endScreen('You left the meeting', '', ['Rejoin', 'Return to home screen']);
    };
  };
  let timers = [];
  const later = (s, f) => timers.push(setTimeout(() => { if (state.phase !== 'ended') f(); }, s * 1000));
  function waitingRoom() {
    state.phase = 'waiting';
    html('<div id="waiting"><h2>Asking to be let in\u2026</h2><p>You\u2019ll join the call when someone lets you in</p>' +
      '<button id="home">Return to home screen</button></div>' + controls(false));
    wireControls('waiting');
    report('waiting');
    const after = sc.admit_after === undefined ? 1 : sc.admit_after;
    if (sc.scenario === 'deny') later(after, () => endScreen('Someone in the call denied your request to join', '', ['Return to home screen']));
    else if (sc.scenario === 'no_response') later(after, () => endScreen('No one responded to your request to join the call', '', ['Ask to join again', 'Return to home screen']));
    else if (sc.scenario !== 'never_admit') later(after, enterCall);
  }

  // ---------- in call ----------
  let stream = null;
  const stopMedia = () => { if (stream) stream.getTracks().forEach((t) => t.stop()); stream = null; };
  const tiles = () => {
    let s = '<div class="tile" data-participant-id="spaces/' + code + '/devices/self" data-self-name="You">' + esc(nameBox.value) + ' (You)</div>';
    for (let i = 0; i < otherCount; i++) s += '<div class="tile" data-participant-id="spaces/' + code + '/devices/' + i + '">Guest ' + (i + 1) + '</div>';
    return s;
  };
  const renderCall = () => {
    html('<div id="call"><div id="tiles">' + tiles() + '</div><video id="selfview" muted autoplay playsinline class="tile"></video></div>' +
      controls(true) + (state.notice ? noticeHtml : ''));
    wireControls('call');
    if (state.notice) wireNotice();
    if (stream) { $('selfview').srcObject = stream; $('selfview').play().catch(() => {}); }
  };
  const noticeHtml = '<div role="dialog" aria-modal="true" id="notice"><h2>This video call is being recorded</h2>' +
    '<p>By staying in the call you consent to being recorded.</p>' +
    '<button data-mdc-dialog-action="cancel"><span>Leave meeting</span></button>' +
    '<button data-mdc-dialog-action="ok" id="notice-ok"><span>Join now</span></button></div>';
  const wireNotice = () => {
    $('notice-ok').onclick = () => { state.notice = false; $('notice').remove(); report('notice_accepted'); };
  };
  async function enterCall() {
    state.phase = 'call';
    state.notice = !!sc.recording_notice;
    report('admitted', {camera_on: state.cam, mic_on: state.mic});
    try {
      stream = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
    } catch (e) { report('media_error', {error: String(e)}); }
    if (stream) {
      stream.getVideoTracks().forEach((t) => { t.enabled = state.cam; });
      stream.getAudioTracks().forEach((t) => { t.enabled = state.mic; });
    }
    renderCall();
    if (stream) measure();
    if (sc.tones) startRtc().catch((e) => report('rtc_error', {error: String(e && e.stack || e)}));
    startReadChat();
    const endAfter = sc.end_after === undefined ? 3 : sc.end_after;
    if (sc.scenario === 'ended') later(endAfter, () => { stopMedia(); endScreen('Your host ended the meeting for everyone'); });
    if (sc.scenario === 'removed') later(endAfter, () => { stopMedia(); endScreen("You\u2019ve been removed from the meeting"); });
    if (sc.scenario === 'everyone_left') later(endAfter, () => { otherCount = 0; renderCall(); report('everyone_left'); });
  }

  // ---------- WebRTC over loopback: remote participants' audio, the way Meet carries it ----------
  // The page's "meeting" RTCPeerConnection (the one a bot hooks) is connected to a far end that
  // lives in a same-origin iframe: its RTCPeerConnection is the iframe's own, so a hook installed
  // in the top frame never sees it. Signalling is direct (both ends are in this process), SDP is
  // exchanged after ICE gathering and only 127.0.0.1 candidates are kept, so media never uses the
  // machine's network addresses. Each tone {freq, at, gain} is one participant: an OscillatorNode
  // -> MediaStreamDestination track added (renegotiated) `at` s after the connection is up.
  const FAR_END = '<!doctype html><script>' +
    'window.farEnd = (() => {' +
    '  const pc = new RTCPeerConnection({iceServers: []});' +
    '  let ctx = null; const got = {tracks: 0, rms: 0};' +
    '  pc.ontrack = (e) => { got.tracks++; if (e.track.kind === "audio") listen(e.track); };' +
    // What the PAL sends, measured: AnalyserNode (fftSize 2048, no smoothing) every 20 ms, the
    // dominant bin refined by a parabola over its neighbours (dB), and the RMS of the waveform.
    '  const meter = {samples: []};' +
    '  function listen(track) {' +
    '    const el = new Audio(); el.muted = true; el.srcObject = new MediaStream([track]); el.play().catch(() => {});' +
    '    const mctx = new AudioContext(); mctx.resume().catch(() => {});' +
    '    const an = mctx.createAnalyser(); an.fftSize = 2048; an.smoothingTimeConstant = 0;' +
    '    mctx.createMediaStreamSource(new MediaStream([track])).connect(an);' +
    '    const fd = new Float32Array(an.frequencyBinCount), td = new Float32Array(an.fftSize);' +
    '    setInterval(() => {' +
    '      an.getFloatTimeDomainData(td); let s = 0; for (const v of td) s += v * v;' +
    '      an.getFloatFrequencyData(fd); let b = 2; for (let i = 3; i < fd.length - 1; i++) if (fd[i] > fd[b]) b = i;' +
    '      const a = fd[b - 1], m = fd[b], c = fd[b + 1], d = a - 2 * m + c;' +
    '      const off = isFinite(d) && d < 0 ? 0.5 * (a - c) / d : 0;' +
    '      meter.samples.push({t: Date.now() / 1000, f: (b + off) * mctx.sampleRate / an.fftSize, bin: b,' +
    '                          db: isFinite(m) ? m : -999, rms: Math.sqrt(s / td.length), rate: mctx.sampleRate});' +
    '    }, 20);' +
    '  }' +
    '  return {pc, got, meter, async addTone(freq, gain) {' +
    '    if (!ctx) ctx = new AudioContext();' +
    '    try { await ctx.resume(); } catch (e) {}' +
    '    const osc = ctx.createOscillator(); osc.frequency.value = freq;' +
    '    const g = ctx.createGain(); g.gain.value = gain;' +
    '    const dest = ctx.createMediaStreamDestination();' +
    '    osc.connect(g); g.connect(dest); osc.start();' +
    '    const [track] = dest.stream.getAudioTracks();' +
    '    pc.addTransceiver(track, {direction: "sendonly", streams: [dest.stream]});' +
    '    return {track: track.id, rate: ctx.sampleRate};' +
    '  }};' +
    '})();<\/script>';
  const loopbackOnly = (desc) => ({type: desc.type, sdp: desc.sdp.split('\r\n').filter((l) =>
    !l.startsWith('a=candidate:') || / 127\.0\.0\.1 /.test(l)).join('\r\n')});
  const gathered = (pc) => new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const done = () => { if (pc.iceGatheringState === 'complete') { pc.removeEventListener('icegatheringstatechange', done); resolve(); } };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, 3000);
  });
  const negotiate = async (offerer, answerer) => {
    await offerer.setLocalDescription();
    await gathered(offerer);
    await answerer.setRemoteDescription(loopbackOnly(offerer.localDescription));
    await answerer.setLocalDescription();
    await gathered(answerer);
    await offerer.setRemoteDescription(loopbackOnly(answerer.localDescription));
  };
  const rtc = {pc: null, far: null, chain: Promise.resolve(), audios: 0};
  const serial = (f) => (rtc.chain = rtc.chain.then(f, f));
  const selectedPair = async (pc) => {
    try {
      const stats = await pc.getStats(); let pair = null;
      stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
      if (!pair) return {};
      const l = stats.get(pair.localCandidateId) || {}, r = stats.get(pair.remoteCandidateId) || {};
      return {local: (l.address || l.ip) + ':' + l.port, remote: (r.address || r.ip) + ':' + r.port,
              local_type: l.candidateType, remote_type: r.candidateType};
    } catch (e) { return {error: String(e)}; }
  };
  async function startRtc() {
    const frame = document.createElement('iframe');
    // Without camera/mic permission Chromium does not enumerate interfaces for the far end: its
    // sockets are bound to the any-address, so what it sends to 127.0.0.1 leaves from 127.0.0.1
    // (with permission it also binds the machine's own addresses and may pick one of them).
    frame.allow = "camera 'none'; microphone 'none'";
    frame.srcdoc = FAR_END;
    const loaded = new Promise((r) => frame.addEventListener('load', r, {once: true}));
    $('media').appendChild(frame);
    await loaded;
    rtc.far = frame.contentWindow.farEnd;
    const pc = rtc.pc = new RTCPeerConnection({iceServers: []});
    // Meet plays every remote stream through an <audio> element.
    pc.addEventListener('track', (e) => {
      const a = document.createElement('audio');
      a.autoplay = true; a.srcObject = e.streams[0] || new MediaStream([e.track]);
      $('media').appendChild(a); rtc.audios++;
      a.play().catch(() => {});
      report('remote_track', {kind: e.track.kind, id: e.track.id});
    });
    pc.createDataChannel('collections');  // like Meet; also gives an m-line when there is no mic
    const mic = stream && stream.getAudioTracks()[0];
    if (mic) rtc.micSender = pc.addTrack(mic, stream);  // what the PAL says goes to the far end (never back)
    // The far end's measurements of the PAL's audio, in batches (server: record.far_audio).
    setInterval(() => {
      const batch = rtc.far.meter.samples.splice(0);
      if (batch.length && state.phase !== 'ended') report('far_audio', {samples: batch});
    }, 200);
    await serial(() => negotiate(pc, rtc.far.pc));
    const connected = await new Promise((resolve) => {
      const ok = () => ['connected', 'completed'].includes(pc.iceConnectionState);
      if (ok()) return resolve(true);
      const t = setTimeout(() => resolve(false), 10000);
      pc.addEventListener('iceconnectionstatechange', () => { if (ok()) { clearTimeout(t); resolve(true); } });
    });
    // Both ends' view of the selected pair (a peer-reflexive remote shows no address in stats).
    report('rtc', {ice: pc.iceConnectionState, connected, pair: await selectedPair(pc),
                   far_pair: await selectedPair(rtc.far.pc)});
    for (const tone of sc.tones) {
      const at = tone.at || 0;
      later(at, () => serial(async () => {
        const info = await rtc.far.addTone(tone.freq || 440, tone.gain === undefined ? 0.3 : tone.gain);
        await negotiate(rtc.far.pc, pc);
        report('tone_started', Object.assign({freq: tone.freq || 440, at}, info));
      }).catch((e) => report('rtc_error', {error: String(e)})));
    }
  }

  // Like Meet, the in-call mic button stops the mic track on "off" and asks getUserMedia for a new
  // one on "on", which replaces the track the meeting connection sends.
  async function micDevice(on) {
    if (!on) {
      stream.getAudioTracks().forEach((t) => { t.stop(); stream.removeTrack(t); });
      if (rtc.micSender) await rtc.micSender.replaceTrack(null).catch(() => {});
      return report('mic_device', {on: false});
    }
    try {
      const s = await navigator.mediaDevices.getUserMedia({audio: true});
      const t = s.getAudioTracks()[0];
      stream.addTrack(t);
      if (rtc.micSender) await rtc.micSender.replaceTrack(t);
      report('mic_device', {on: true, label: t.label});
    } catch (e) { report('media_error', {error: String(e)}); }
  }

  // ---------- READ and CHAT: a captions region and a chat panel (shared notes meet-media.md) ----------
  // sc.captions: [{at, row, speaker, text} (create or rewrite row `row`), {at, row, remove: true},
  //   {at, notice} (in the announcer, never in the captions region), {at, rerender: true, gap}
  //   (empty the region, then rebuild every row as new nodes `gap` s later)], `at` counted from
  //   the moment captions are turned on. sc.chat: [{at, sender, text}], `at` counted from admission.
  // The chat panel (and its textarea) exists only while open; the PAL's messages have no header.
  const AVATAR = 'data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==';
  const extras = () => {
    let ex = document.getElementById('extras');
    if (!ex) {
      ex = document.createElement('div'); ex.id = 'extras'; document.body.appendChild(ex);
      ex.innerHTML = '<div role="status" aria-live="polite" id="announcer"></div><div id="captions-host"></div><div id="panel-host"></div>';
    }
    return ex;
  };
  const cap = {rows: new Map(), list: null, scheduled: false};
  const capRow = (r) => {
    const el = document.createElement('div');
    el.innerHTML = '<div><img alt="" width="24" height="24" src="' + AVATAR + '"><span></span></div><div><span></span></div>';
    el.children[0].querySelector('span').textContent = r.speaker;
    el.children[1].querySelector('span').textContent = r.text;
    r.el = el;
    return el;
  };
  const setCaptionsLabel = () => document.querySelectorAll('button[aria-label$="on captions"],button[aria-label$="off captions"]')
    .forEach((b) => b.setAttribute('aria-label', state.captions ? 'Turn off captions' : 'Turn on captions'));
  function captionsOn() {
    state.captions = true; setCaptionsLabel();
    const host = extras().querySelector('#captions-host');
    host.innerHTML = '<div role="region" aria-label="Captions" tabindex="0"><div></div></div>';
    cap.list = host.firstChild.firstChild;
    for (const r of cap.rows.values()) cap.list.appendChild(capRow(r));
    report('captions_on');
    if (cap.scheduled) return;
    cap.scheduled = true;
    for (const ev of sc.captions || []) later(ev.at || 0, () => captionEvent(ev));
  }
  function captionsOff() {
    state.captions = false; setCaptionsLabel();
    extras().querySelector('#captions-host').innerHTML = ''; cap.list = null;
    report('captions_off');
  }
  function captionEvent(ev) {
    if (ev.notice) { extras().querySelector('#announcer').textContent = ev.notice; return report('caption_notice', {text: ev.notice}); }
    if (ev.rerender) {
      if (cap.list) cap.list.innerHTML = '';
      return setTimeout(() => { if (cap.list) for (const r of cap.rows.values()) cap.list.appendChild(capRow(r)); }, 1000 * (ev.gap || 0.3));
    }
    let r = cap.rows.get(ev.row);
    if (ev.remove) { if (r) { r.el.remove(); cap.rows.delete(ev.row); } return; }
    if (!r) {
      r = {speaker: ev.speaker || 'Guest 1', text: ev.text || ''}; cap.rows.set(ev.row, r);
      if (cap.list) cap.list.appendChild(capRow(r));
    }
    r.text = ev.text || ''; r.el.children[1].querySelector('span').textContent = r.text;
  }
  const chat = {open: false, messages: [], n: 0, list: null, lastSender: undefined, group: null};
  const hhmm = () => new Date().toLocaleTimeString('en-US', {hour: 'numeric', minute: '2-digit'});
  function chatAppend(m) {
    if (!chat.list) return;
    if (chat.group === null || chat.lastSender !== m.sender) {
      chat.group = document.createElement('div');
      chat.group.innerHTML = (m.sender === null ? '' : '<div><div></div><div></div></div>') + '<div></div>';
      if (m.sender !== null) {
        chat.group.firstChild.children[0].textContent = m.sender;
        chat.group.firstChild.children[1].textContent = m.time;
      }
      chat.list.appendChild(chat.group); chat.lastSender = m.sender;
    }
    const item = document.createElement('div');
    item.setAttribute('data-message-id', m.id);
    item.innerHTML = '<div></div><button data-message-id="' + esc(m.id) + '" aria-label="Pin message"><i>keep</i></button>';
    item.firstChild.textContent = m.text;
    chat.group.lastChild.appendChild(item);
  }
  function renderPanel() {
    const host = extras().querySelector('#panel-host');
    chat.list = null; chat.group = null; chat.lastSender = undefined;
    if (!chat.open) { host.innerHTML = ''; return; }
    host.innerHTML = '<aside aria-label="Side panel"><h2>In-call messages</h2>' +
      '<div>Messages can only be seen by people in the call and are deleted when the call ends.</div>' +
      '<div role="list" aria-live="polite"></div>' +
      '<div><textarea aria-label="Send a message" placeholder="Send a message"></textarea>' +
      '<button aria-label="Send a message" disabled><i>send</i></button></div></aside>';
    chat.list = host.querySelector('[role="list"]');
    chat.messages.forEach(chatAppend);
  }
  function sendChat() {
    const ta = document.querySelector('textarea[aria-label="Send a message"]');
    const text = ta ? ta.value.trim() : '';
    if (!text) return;
    ta.value = ''; ta.nextElementSibling.disabled = true;
    const m = {id: 'spaces/' + code + '/messages/' + (++chat.n), sender: null, time: hhmm(), text};
    chat.messages.push(m); chatAppend(m);
    report('chat_sent', {text, id: m.id});
  }
  function startReadChat() {
    document.addEventListener('click', (e) => {
      const b = e.target.closest && e.target.closest('button');
      if (!b || state.phase !== 'call') return;
      const label = b.getAttribute('aria-label') || '';
      if (label === 'Turn on captions') captionsOn();
      else if (label === 'Turn off captions') captionsOff();
      else if (label.startsWith('Chat with everyone')) { chat.open = !chat.open; renderPanel(); report('chat_panel', {open: chat.open}); }
      else if (label === 'Send a message' && !b.disabled) sendChat();
    }, true);
    document.addEventListener('input', (e) => {
      const t = e.target;
      if (t.matches && t.matches('textarea[aria-label="Send a message"]')) t.nextElementSibling.disabled = !t.value.trim();
    }, true);
    document.addEventListener('keydown', (e) => {
      const t = e.target;
      if (e.key === 'Enter' && !e.shiftKey && t.matches && t.matches('textarea[aria-label="Send a message"]')) {
        e.preventDefault(); sendChat();
      }
    }, true);
    for (const m of sc.chat || []) later(m.at || 0, () => {
      const msg = {id: 'spaces/' + code + '/messages/' + (++chat.n), sender: m.sender || 'Guest 1', time: hhmm(), text: m.text};
      chat.messages.push(msg); chatAppend(msg);
      report('chat_posted', {sender: msg.sender, text: msg.text, id: msg.id});
    });
  }

  // Media check: do the frames change, and is there sound?
  async function measure() {
    const video = document.createElement('video');
    video.muted = true; video.playsInline = true; video.srcObject = stream;
    try { await video.play(); } catch (e) {}
    const canvas = $('probe') || document.createElement('canvas');
    const g = canvas.getContext('2d', {willReadFrequently: true});
    const ctx = new AudioContext();
    try { await ctx.resume(); } catch (e) {}
    const an = ctx.createAnalyser(); an.fftSize = 2048;
    if (stream.getAudioTracks().length) ctx.createMediaStreamSource(stream).connect(an);
    const buf = new Float32Array(an.fftSize);
    while (stream && state.phase === 'call') {
      const hashes = new Set(); let rms = 0; let frames = 0;
      for (let i = 0; i < 30 && stream; i++) {
        await new Promise((r) => setTimeout(r, 100));
        if (video.videoWidth) {
          g.drawImage(video, 0, 0, 64, 48);
          const px = g.getImageData(0, 0, 64, 48).data;
          let h = 2166136261;
          for (let k = 0; k < px.length; k += 4) { h ^= px[k] + (px[k + 1] << 8) + (px[k + 2] << 16); h = Math.imul(h, 16777619) >>> 0; }
          hashes.add(h); frames++;
        }
        an.getFloatTimeDomainData(buf);
        let s = 0; for (const v of buf) s += v * v;
        rms = Math.max(rms, Math.sqrt(s / buf.length));
      }
      const vt = stream ? stream.getVideoTracks()[0] : null;
      const at = stream ? stream.getAudioTracks()[0] : null;
      report('media', {
        video_track: vt ? vt.readyState : 'none', video_enabled: vt ? vt.enabled : false,
        video_label: vt ? vt.label : '', audio_track: at ? at.readyState : 'none',
        audio_enabled: at ? at.enabled : false, frames, distinct_frames: hashes.size, audio_rms: rms,
        audio_state: ctx.state,
      });
    }
  }
})();
</script>
</body></html>
"""
