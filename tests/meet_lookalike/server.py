"""HTTPS look-alike of meet.google.com on 127.0.0.1, for driving the real bot in tests.

Chromium reaches it only through flags (see ``browser_args``): the host resolver maps
meet.google.com to our port and the certificate's SPKI hash is trusted, so the bot's code and
the meeting URL stay the production ones.

Control API (also reachable over HTTP by tests in other processes):
    POST /__control/<code>  {"scenario": ..., "admit_after": 2.0, ...}  -> sets the scenario
    GET  /__scenario/<code>                                           -> what the page plays
    POST /__report/<code>   {"event": ...}                            -> page reports
    GET  /__state/<code>                                              -> what was recorded
Scenarios: admit (default), join_now, deny, no_response, never_admit, blocked, invalid, sign_in,
ended, removed, everyone_left, stay. Options: admit_after, end_after, participants,
interstitial ("media_choice" | "got_it"), recording_notice, camera_on, mic_on,
no_captions (true: no captions button, as when an admin turns captions off),
tones ([{"freq": 440, "at": 0.0, "gain": 0.3}, ...]: once admitted, the page's meeting
RTCPeerConnection is connected over 127.0.0.1 to an unhooked far end in an iframe, and each tone
is a participant track added `at` s after that connection is up; see page.py; the far end also
measures the PAL's audio into record.far_audio, and the in-call mic button stops the track on "off"
and calls getUserMedia again on "on", like Meet),
captions ([{"at", "row", "speaker", "text"} | {"at", "row", "remove": true} | {"at", "notice"} |
{"at", "rerender": true}], scripted from the moment captions are turned on), chat
([{"at", "sender", "text"}], participant messages from admission; see page.py).

Chromium needs --allow-loopback-in-peer-connection (in browser_args) to gather 127.0.0.1
candidates; the page drops every other candidate before it reaches the other end.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import ssl
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .page import PAGE_HTML

HOST = "meet.google.com"
CODE_RE = re.compile(r"^[a-z]{3}-[a-z]{4}-[a-z]{3}$")


@dataclass
class MeetingRecord:
    """What the page reported for one meeting code."""

    scenario: dict[str, Any] = field(default_factory=lambda: {"scenario": "admit"})
    events: list[dict[str, Any]] = field(default_factory=list)
    page_loads: int = 0
    name: str | None = None
    join_button: str | None = None
    join_clicked_at: float | None = None
    camera_on_at_join: bool | None = None
    mic_on_at_join: bool | None = None
    admitted: bool = False
    interstitial_clicked: str | None = None
    notice_accepted: bool = False
    leave_clicked: str | None = None
    media: list[dict[str, Any]] = field(default_factory=list)
    rtc: list[dict[str, Any]] = field(default_factory=list)  # "rtc" reports: ICE state, selected pair
    tones_started: list[dict[str, Any]] = field(default_factory=list)  # with the server time "t"
    # The far end's AnalyserNode on the PAL's audio, every 20 ms: {t (page clock, s), f (Hz), rms, db}.
    far_audio: list[dict[str, Any]] = field(default_factory=list)
    captions_on: bool = False  # someone clicked "Turn on captions"
    chat_sent: list[str] = field(default_factory=list)  # messages the PAL sent in the chat panel

    def event_names(self) -> list[str]:
        return [e["event"] for e in self.events]

    def video_live(self) -> bool:
        """A live, enabled video track whose frames kept changing in some measurement window."""
        return any(m.get("video_track") == "live" and m.get("video_enabled") and m.get("distinct_frames", 0) >= 3
                   for m in self.media)

    def audio_live(self, threshold: float = 0.01) -> bool:
        return any(m.get("audio_track") == "live" and m.get("audio_enabled") and m.get("audio_rms", 0) > threshold
                   for m in self.media)

    def apply(self, ev: dict[str, Any]) -> None:
        ev = dict(ev, t=time.time())
        self.events.append(ev)
        kind = ev.get("event")
        if kind == "page_loaded":
            self.page_loads += 1
        elif kind == "join_clicked":
            self.name, self.join_button = ev.get("name"), ev.get("button")
            self.join_clicked_at = ev["t"]
            self.camera_on_at_join, self.mic_on_at_join = ev.get("camera_on"), ev.get("mic_on")
        elif kind == "admitted":
            self.admitted = True
        elif kind == "interstitial":
            self.interstitial_clicked = ev.get("clicked")
        elif kind == "notice_accepted":
            self.notice_accepted = True
        elif kind == "leave_clicked":
            self.leave_clicked = ev.get("phase")
        elif kind == "media":
            self.media.append(ev)
        elif kind == "rtc":
            self.rtc.append(ev)
        elif kind == "tone_started":
            self.tones_started.append(ev)
        elif kind == "captions_on":
            self.captions_on = True
        elif kind == "chat_sent":
            self.chat_sent.append(str(ev.get("text")))
        elif kind == "far_audio":
            self.far_audio.extend(ev.get("samples") or [])


def make_certificate(directory: Path) -> tuple[Path, Path, str]:
    """Self-signed cert for meet.google.com: (cert.pem, key.pem, base64 sha256 of its SPKI)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert_path, key_path, base64.b64encode(hashlib.sha256(spki).digest()).decode()


class MeetLookalike:
    """The server: start(), configure meetings, read records, stop()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meetings: dict[str, MeetingRecord] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="meet-lookalike-")
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.spki = ""

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> "MeetLookalike":
        cert, key, self.spki = make_certificate(Path(self._tmp.name))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="meet-lookalike", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        self._tmp.cleanup()

    # --- what tests use ------------------------------------------------------------------
    def browser_args(self) -> tuple[str, ...]:
        """Extra Chromium flags (BOT_BROWSER_ARGS) that send meet.google.com here and nothing anywhere."""
        return (
            f"--host-resolver-rules=MAP {HOST} 127.0.0.1:{self.port}, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={self.spki}",
            # WebRTC between the page and its far end runs over 127.0.0.1 only (see page.py).
            "--allow-loopback-in-peer-connection",
        )

    def browser_args_env(self) -> str:
        """browser_args() as one shell-quoted string, the form BOT_BROWSER_ARGS takes."""
        import shlex

        return " ".join(shlex.quote(a) for a in self.browser_args())

    @staticmethod
    def url(code: str) -> str:
        return f"https://{HOST}/{code}"

    def configure(self, code: str, scenario: str = "admit", **options: Any) -> str:
        """Set what meeting `code` plays; returns its https://meet.google.com/ URL."""
        with self._lock:
            self._meetings[code] = MeetingRecord(scenario={"scenario": scenario, **options})
        return self.url(code)

    def record(self, code: str) -> MeetingRecord:
        with self._lock:
            return self._meetings.setdefault(code, MeetingRecord())

    # --- request handling ----------------------------------------------------------------
    def _scenario(self, code: str) -> dict[str, Any]:
        return dict(self.record(code).scenario)

    def _report(self, code: str, ev: dict[str, Any]) -> None:
        with self._lock:
            self._meetings.setdefault(code, MeetingRecord()).apply(ev)


def _handler_for(server: MeetLookalike) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json_body(self) -> dict[str, Any]:
            n = int(self.headers.get("Content-Length") or 0)
            try:
                data = json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                return {}
            return data if isinstance(data, dict) else {}

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            parts = path.strip("/").split("/")
            if len(parts) == 2 and parts[0] == "__scenario":
                return self._send(200, json.dumps(server._scenario(parts[1])).encode())
            if len(parts) == 2 and parts[0] == "__state":
                return self._send(200, json.dumps(asdict(server.record(parts[1])), default=str).encode())
            if len(parts) == 1 and CODE_RE.match(parts[0]):
                return self._send(200, PAGE_HTML.encode(), "text/html; charset=utf-8")
            self._send(404, b"{}")

        def do_POST(self) -> None:  # noqa: N802
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            body = self._json_body()
            if len(parts) == 2 and parts[0] == "__report":
                server._report(parts[1], body)
                return self._send(204, b"")
            if len(parts) == 2 and parts[0] == "__control":
                scenario = str(body.pop("scenario", "admit"))
                server.configure(parts[1], scenario, **body)
                return self._send(200, b"{}")
            self._send(404, b"{}")

    return Handler
