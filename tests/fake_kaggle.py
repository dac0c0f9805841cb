"""A fake of the Kaggle API on 127.0.0.1, for driving the real `kaggle` CLI offline.

With `KAGGLE_API_ENVIRONMENT=LOCALHOST` the kaggle client (2.x) calls
`http://localhost/api/v1/<service>/<Method>`; with `HTTP_PROXY` pointing here,
those requests arrive as absolute-URI proxy requests on any loopback port.
Every API call is a POST with a camelCase JSON body; a JSON reply carrying
`"code" >= 400` and a `"message"` is raised by the client as an HTTP error.
"""

from __future__ import annotations

import email.utils
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

COMPETITIONS = "/api/v1/competitions.CompetitionApiService/"
KERNELS = "/api/v1/kernels.KernelsApiService/"
ZIP_PATH = "/files/digit-recognizer.zip"
UPLOAD_PATH = "/upload/submission-token"
RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."
# The failure modes a test can switch on; "ok" serves every call.
MODES = ("ok", "rules", "error", "corrupt", "kernel-error", "upload-error")


@dataclass
class Request:
    method: str
    path: str
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class FakeKaggle:
    """The fake service: serves `zip_bytes`, accepts submissions and kernels.

    Attributes:
        zip_bytes: The competition's `digit-recognizer.zip`.
        mode: "ok"; "rules" answers every call 403 as for unaccepted rules;
            "error" answers every call 500; "corrupt" serves a truncated zip;
            "kernel-error" answers SaveKernel 200 with an `error` field;
            "upload-error" answers the PUT of a submission's bytes 500.
        requests: Every request received, in order.
    """

    zip_bytes: bytes = b""
    mode: str = "ok"
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeKaggle:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self, method_name: str) -> list[Request]:
        """The API calls (POSTs) to `method_name`, e.g. "CreateSubmission"."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/" + method_name)]

    def uploads(self) -> list[bytes]:
        return [r.body for r in self.requests if r.method == "PUT"]


def kaggle_env(base: dict, proxy_url: str, home: Path, credentials: bool = True) -> dict:
    """Environment for a `kaggle` process that talks only to `proxy_url`.

    HOME and KAGGLE_CONFIG_DIR are fresh folders under `home`, so no real
    credentials are seen; `credentials` adds a fake KAGGLE_USERNAME/KAGGLE_KEY.
    """
    env = {k: v for k, v in base.items() if not k.startswith("KAGGLE_") and k.lower() not in _PROXY_NAMES}
    (home / ".kaggle").mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        KAGGLE_CONFIG_DIR=str(home / ".kaggle"),
        KAGGLE_API_ENVIRONMENT="LOCALHOST",
        HTTP_PROXY=proxy_url,
        http_proxy=proxy_url,
    )
    if credentials:
        env.update(KAGGLE_USERNAME="fake-user", KAGGLE_KEY="fake-secret-key-0123")
    return env


_PROXY_NAMES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def _handler_for(fake: FakeKaggle) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass  # keep the test output clean

        def _record(self) -> Request:
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, urlsplit(self.path).path, self.rfile.read(length))
            fake.requests.append(request)
            return request

        def _reply(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, payload: dict, status: int = 200) -> None:
            self._reply(status, json.dumps(payload).encode(), "application/json")

        def do_POST(self) -> None:
            request = self._record()
            if fake.mode == "rules":
                return self._json({"code": 403, "message": RULES_MESSAGE}, status=403)
            if fake.mode == "error":
                return self._json({"code": 500, "message": "Internal server error"}, status=500)
            method = request.path.rsplit("/", 1)[-1]
            if request.path == COMPETITIONS + "DownloadDataFiles":
                self.send_response(302)
                self.send_header("Location", "http://localhost" + ZIP_PATH)
                self.send_header("Content-Length", "0")
                return self.end_headers()
            if request.path == COMPETITIONS + "StartSubmissionUpload":
                return self._json({"token": "submission-token", "createUrl": "http://localhost" + UPLOAD_PATH})
            if request.path == COMPETITIONS + "CreateSubmission":
                return self._json({"message": "Successfully submitted to Digit Recognizer", "ref": 4242})
            if request.path == COMPETITIONS + "GetSubmissionLimits":
                return self._json({})
            if request.path == KERNELS + "SaveKernel" and fake.mode == "kernel-error":
                return self._json({"error": "Notebook title is already in use"})
            if request.path == KERNELS + "SaveKernel":
                slug = request.json()["slug"]
                return self._json(
                    {"ref": "/code/" + slug, "url": "https://www.kaggle.com/code/" + slug, "versionNumber": 3}
                )
            return self._json({"code": 404, "message": f"fake Kaggle has no method {method}"}, status=404)

        def do_GET(self) -> None:
            request = self._record()
            if request.path != ZIP_PATH:
                return self._reply(404, b"not found", "text/plain")
            payload = fake.zip_bytes[: len(fake.zip_bytes) // 2] if fake.mode == "corrupt" else fake.zip_bytes
            modified = email.utils.formatdate(usegmt=True)
            self._reply(200, payload, "application/zip", {"Last-Modified": modified})

        def do_PUT(self) -> None:
            request = self._record()
            status = 200 if request.path == UPLOAD_PATH else 404
            if fake.mode == "upload-error":
                status = 500
            self._reply(status, b"", "text/plain")

    return Handler
