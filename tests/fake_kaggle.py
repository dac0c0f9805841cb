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
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from src.kaggle.kernel_build import SCRIPT_MARK
from tests.helpers import REPO_ROOT, run_command, run_module

COMPETITIONS = "/api/v1/competitions.CompetitionApiService/"
KERNELS = "/api/v1/kernels.KernelsApiService/"
ZIP_PATH = "/files/digit-recognizer.zip"
UPLOAD_PATH = "/upload/submission-token"
KERNEL_OUTPUT_PATH = "/kernel-output/"
FIRST_REF = 4242  # the ref of the first submission a fake takes; the next ones count up
RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."
# The failure modes a test can switch on; "ok" serves every call.
MODES = ("ok", "rules", "unauthorized", "error", "corrupt", "kernel-error", "upload-error")
# Credentials every test process gets: recognisable, so a test can search its output for them.
FAKE_USER = "fake-user"
FAKE_KEY = "fake-secret-key-0123"
FAKE_TOKEN = "fake-api-token-4567"
POLL_SECONDS = "0.05"  # between a test's polls of the fake
SERVER_POLL_SECONDS = 0.01  # between the fake's own checks for shutdown


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
            "unauthorized" answers every call 401 as for a revoked key;
            "error" answers every call 500; "corrupt" serves a truncated zip;
            "kernel-error" answers SaveKernel 200 with an `error` field;
            "upload-error" answers the PUT of a submission's bytes 500.
        submissions: What ListSubmissions answers, as Kaggle's JSON (`ApiSubmission`),
            newest first; CreateSubmission adds the new one (PENDING) at the front.
        scoring: The states successive reads (GetSubmission, ListSubmissions) give a
            submission this fake took, e.g. ["PENDING", "PENDING", "COMPLETE"]; the last one repeats.
        public_score: The public score a COMPLETE submission gets.
        scoring_error: Kaggle's reason sent with an ERROR state.
        kernel_states: What successive GetKernelSessionStatus calls answer, e.g.
            ["QUEUED", "RUNNING", "COMPLETE"]; the last one repeats.
        kernel_failure: The failure message sent with the kernel's status.
        kernel_files: The kernel's output files, by name, for ListKernelSessionOutput.
        kernel_log: The kernel's log, sent with its output.
        run_kernels: A folder laid out as Kaggle mounts the competition's data (see tests/synthetic.py):
            when given, each SaveKernel push stores its script and runs it for real, in a subprocess
            (`python <script> --input run_kernels --output <its own folder>`), one version per slug
            at a time; its status, output files (with runs/) and log are that process's.
        failing_runs: Slug -> how many of its next runs get an empty input folder, so that the real
            script fails (no train.csv) as a kernel without the competition's data does.
        kernel_runs: Slug -> its runs so far (`KernelRun`), oldest first.
        gpu_quota: (hours used, hours allowed) this week, for GetAcceleratorQuotaStatistics; None sends none.
        accept_token: Whether IntrospectToken takes FAKE_TOKEN (as KAGGLE_API_TOKEN) for FAKE_USER;
            otherwise every token is refused, as for a revoked one.
        requests: Every request received, in order.
    """

    zip_bytes: bytes = b""
    mode: str = "ok"
    submissions: list[dict] = field(default_factory=list)
    scoring: list[str] = field(default_factory=lambda: ["COMPLETE"])
    public_score: str = "0.91234"
    scoring_error: str = ""
    kernel_states: list[str] = field(default_factory=lambda: ["COMPLETE"])
    kernel_failure: str = ""
    kernel_files: dict[str, bytes] = field(default_factory=dict)
    kernel_log: str = ""
    accept_token: bool = False
    requests: list[Request] = field(default_factory=list)
    run_kernels: Path | None = None
    failing_runs: dict[str, int] = field(default_factory=dict)
    kernel_runs: dict[str, list[KernelRun]] = field(default_factory=dict)
    gpu_quota: tuple[float, float] | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        # Kernels run in the test's own environment, not that of a command talking to the fake at the time.
        self._environment = dict(os.environ)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        # `shutdown` waits for the server's next poll: every test would wait half a second (the default) at its end.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(SERVER_POLL_SECONDS,), daemon=True)

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
        for run in (run for runs in self.kernel_runs.values() for run in runs):
            run.stop()
        if self.kernel_runs:
            shutil.rmtree(self._workspace(), ignore_errors=True)

    def _workspace(self) -> Path:
        if not hasattr(self, "_kernel_workspace"):
            self._kernel_workspace = Path(tempfile.mkdtemp(prefix="fake-kaggle-kernels-"))
        return self._kernel_workspace

    def start_kernel(self, slug: str, script: str) -> KernelRun:
        """Run the pushed `script` as Kaggle would: its own folder, the competition's data, no credentials."""
        version = len(self.kernel_runs.get(slug, [])) + 1
        folder = self._workspace() / slug / f"v{version}"
        (folder / "working").mkdir(parents=True)
        input_dir = self.run_kernels
        if self.failing_runs.get(slug, 0) > 0:
            self.failing_runs[slug] -= 1
            input_dir = folder / "empty-input"
            input_dir.mkdir()
        (folder / "script.py").write_text(script, encoding="utf-8")
        env = {
            name: value
            for name, value in self._environment.items()
            if not name.startswith("KAGGLE_") and name.lower() not in _PROXY_NAMES
        }
        env.update(PYTHONPATH="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        command = [sys.executable, "script.py", "--input", str(input_dir), "--output", str(folder / "working")]
        with open(folder / "log.txt", "wb") as log:
            process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        run = KernelRun(version, process, folder / "working", folder / "log.txt")
        self.kernel_runs.setdefault(slug, []).append(run)
        return run

    def calls(self, method_name: str) -> list[Request]:
        """The API calls (POSTs) to `method_name`, e.g. "CreateSubmission"."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/" + method_name)]

    def uploads(self) -> list[bytes]:
        return [r.body for r in self.requests if r.method == "PUT"]


@dataclass
class KernelRun:
    """One version of a kernel, run by the fake: its process, its /kaggle/working and its log."""

    version: int
    process: subprocess.Popen
    output: Path
    log_path: Path
    reads: int = 0  # status reads so far: the first answers QUEUED, as a fresh push on Kaggle does

    def state(self) -> tuple[str, str]:
        """Kaggle's status and failure message for this run, one read further along."""
        self.reads += 1
        code = self.process.poll()
        if self.reads == 1:
            return "QUEUED", ""
        if code is None:
            return "RUNNING", ""
        if code == 0:
            return "COMPLETE", ""
        return "ERROR", f"Your notebook tried to run a script that ended with exit code {code}"

    def files(self) -> list[str]:
        """Its output files, by path relative to /kaggle/working, in a fixed order."""
        return sorted(path.relative_to(self.output).as_posix() for path in self.output.rglob("*") if path.is_file())

    def log(self) -> str:
        """Its log as Kaggle sends it: a JSON list of stream entries."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return json.dumps([{"stream_name": "stdout", "time": 0.0, "data": text}])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def kaggle_env(base: dict, proxy_url: str, home: Path, credentials: bool = True) -> dict:
    """Environment for a `kaggle` process that talks only to `proxy_url`.

    HOME and KAGGLE_CONFIG_DIR are fresh folders under `home`, so no real
    credentials are seen; `credentials` adds a fake KAGGLE_USERNAME/KAGGLE_KEY.
    The ledger is `home/ledger.csv`.
    """
    # Blank (not drop) what could reach the real Kaggle: `run_command` adds this to its own environment.
    env = {**base, **{k: "" for k in base if k.startswith("KAGGLE_") or k.lower() in _PROXY_NAMES}}
    (home / ".kaggle").mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        KAGGLE_CONFIG_DIR=str(home / ".kaggle"),
        KAGGLE_API_ENVIRONMENT="LOCALHOST",
        HTTP_PROXY=proxy_url,
        http_proxy=proxy_url,
        # The ledger goes beside the fake home, never into the checkout; polls come fast.
        DIGIT_RECOGNIZER_LEDGER=str(home / "ledger.csv"),
        DIGIT_RECOGNIZER_POLL_SECONDS=POLL_SECONDS,
    )
    if credentials:
        env.update(KAGGLE_USERNAME=FAKE_USER, KAGGLE_KEY=FAKE_KEY)
    return env


def run_with_fake(*args, url: str, home: Path, credentials: bool = True, extra: dict | None = None, **options):
    """A command with a fresh HOME, talking only to the fake at `url`; checks no secret leaks.

    `-m src.<command> ...` runs in this process through the command's `main(argv)`
    (`tests.helpers.run_module`), in the environment a subprocess would get: the
    kaggle client is then imported once per test worker, not once per call.
    Anything else (a shell script, the `kaggle` CLI) runs in a subprocess
    (`tests.helpers.run_command`).
    """
    env = {**kaggle_env(os.environ, url, home, credentials=credentials), **(extra or {})}
    if options.get("python", True) and args[0] == "-m" and str(args[1]).startswith("src."):
        result = run_module(str(args[1]), *args[2:], env=env, cwd=options.get("cwd", REPO_ROOT))
    else:
        result = run_command(*args, env=env, timeout=300, **options)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert_no_secret(result)
    return result


def error_line(result) -> str:
    """The one `error:` line a failed command printed on stderr."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def closed_port_url() -> str:
    """A loopback URL where nothing listens: the network, as a client sees it when it is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_no_secret(result) -> None:
    """No fake credential appears in what the process printed."""
    output = result.stdout + result.stderr
    for secret in (FAKE_KEY, FAKE_TOKEN):
        assert secret not in output, output


def assert_no_secret_in_files(folder: Path) -> None:
    """No fake credential is stored in any file under `folder` (ledger, records, run folders, kernel output)."""
    for path in folder.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in (FAKE_KEY, FAKE_TOKEN):
                assert secret.encode() not in content, path


_PROXY_NAMES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def _new_submission(ref: int, description: str) -> dict:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"ref": ref, "date": now, "description": description, "fileName": "submission.csv", "status": "PENDING"}


def _advance(fake: FakeKaggle, submission: dict) -> dict:
    """A submission this fake took, one read further along `fake.scoring`; others stay as they are."""
    created = fake.calls("CreateSubmission")
    if submission["status"] == "PENDING" and FIRST_REF <= submission["ref"] < FIRST_REF + len(created):
        state = fake.scoring.pop(0) if len(fake.scoring) > 1 else fake.scoring[0]
        submission["status"] = state
        if state == "COMPLETE":
            submission["publicScore"] = fake.public_score
        if state == "ERROR":
            submission["errorDescription"] = fake.scoring_error
    return submission


DEFAULT_PAGE_SIZE = 20


def _running_kernels(fake: FakeKaggle, method: str, body: dict) -> tuple[dict, int] | None:
    """The answers of a fake that runs pushed kernels: (JSON, status), or None for the scripted answers."""
    slug = str(body.get("slug") or body.get("kernelSlug") or "").rsplit("/", 1)[-1]
    runs = fake.kernel_runs.get(slug, [])
    if method == "SaveKernel":
        if runs and runs[-1].process.poll() is None:
            return {"error": f"a version of {slug} is still running; wait for it to end"}, 200
        run = fake.start_kernel(slug, body.get("text") or "")
        owner = FAKE_USER
        return {
            "ref": f"/code/{owner}/{slug}",
            "url": f"https://www.kaggle.com/code/{owner}/{slug}",
            "versionNumber": run.version,
        }, 200
    if method not in ("GetKernelSessionStatus", "ListKernelSessionOutput"):
        return None
    if not runs:
        return {"code": 404, "message": f"Notebook {slug} not found"}, 404
    if method == "GetKernelSessionStatus":
        state, failure = runs[-1].state()
        return {"status": state, "failureMessage": failure or None}, 200
    names = runs[-1].files()
    start = int(body.get("pageToken") or 0)
    end = start + int(body.get("pageSize") or DEFAULT_PAGE_SIZE)
    base = f"http://localhost{KERNEL_OUTPUT_PATH}{slug}/{runs[-1].version}/"
    files = [{"url": base + name, "fileName": name} for name in names[start:end]]
    next_token = str(end) if end < len(names) else None
    return {"files": files, "log": runs[-1].log(), "nextPageToken": next_token}, 200


def _quota(gpu_quota: tuple[float, float] | None) -> dict:
    """Kaggle's weekly accelerator quota answer; durations as protobuf writes them ("3600.000s")."""
    if gpu_quota is None:
        return {}
    used, allowed = gpu_quota
    return {
        "quotaRefreshTime": "2026-12-05T00:00:00Z",
        "gpuQuota": {"timeUsed": f"{used * 3600:.3f}s", "totalTimeAllowed": f"{allowed * 3600:.3f}s"},
    }


def _run_output_file(fake: FakeKaggle, name: str) -> Path | None:
    """The output file `<slug>/<version>/<path>` of a kernel run, if there is one."""
    slug, _, rest = name.partition("/")
    version, _, relative = rest.partition("/")
    for run in fake.kernel_runs.get(slug, []):
        path = run.output / relative
        if str(run.version) == version and relative and path.resolve().is_relative_to(run.output.resolve()):
            return path if path.is_file() else None
    return None


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
            if fake.mode == "unauthorized":
                return self._json({"code": 401, "message": "Unauthenticated"}, status=401)
            if fake.mode == "error":
                return self._json({"code": 500, "message": "Internal server error"}, status=500)
            method = request.path.rsplit("/", 1)[-1]
            if method == "IntrospectToken" and fake.accept_token and request.json().get("token") == FAKE_TOKEN:
                return self._json({"active": True, "username": FAKE_USER})
            if request.path == COMPETITIONS + "DownloadDataFiles":
                self.send_response(302)
                self.send_header("Location", "http://localhost" + ZIP_PATH)
                self.send_header("Content-Length", "0")
                return self.end_headers()
            if request.path == COMPETITIONS + "StartSubmissionUpload":
                return self._json({"token": "submission-token", "createUrl": "http://localhost" + UPLOAD_PATH})
            if request.path == COMPETITIONS + "CreateSubmission":
                ref = FIRST_REF + len(fake.calls("CreateSubmission")) - 1
                fake.submissions.insert(0, _new_submission(ref, request.json()["submissionDescription"]))
                return self._json({"message": "Successfully submitted to Digit Recognizer", "ref": ref})
            if request.path == COMPETITIONS + "GetSubmission":
                found = [item for item in fake.submissions if item["ref"] == request.json()["ref"]]
                if not found:
                    return self._json({"code": 404, "message": "Submission not found"}, status=404)
                return self._json(_advance(fake, found[0]))
            if request.path == COMPETITIONS + "GetSubmissionLimits":
                return self._json({})
            if request.path == COMPETITIONS + "ListSubmissions":
                return self._json({"submissions": [_advance(fake, item) for item in fake.submissions]})
            if fake.run_kernels is not None and request.path.startswith(KERNELS):
                answer = _running_kernels(fake, method, request.json())
                if answer is not None:
                    return self._json(*answer)
            if request.path == KERNELS + "GetKernelSessionStatus":
                state = fake.kernel_states.pop(0) if len(fake.kernel_states) > 1 else fake.kernel_states[0]
                return self._json({"status": state, "failureMessage": fake.kernel_failure or None})
            if request.path == KERNELS + "ListKernelSessionOutput":
                files = [
                    {"url": "http://localhost" + KERNEL_OUTPUT_PATH + name, "fileName": name}
                    for name in fake.kernel_files
                ]
                return self._json({"files": files, "log": fake.kernel_log or None})
            if request.path == KERNELS + "GetAcceleratorQuotaStatistics":
                return self._json(_quota(fake.gpu_quota))
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
            name = request.path.removeprefix(KERNEL_OUTPUT_PATH)
            found = _run_output_file(fake, name)
            if found is not None:
                return self._reply(200, found.read_bytes(), "application/octet-stream")
            if request.path.startswith(KERNEL_OUTPUT_PATH) and name in fake.kernel_files:
                return self._reply(200, fake.kernel_files[name], "application/octet-stream")
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


# A kernel folder as `python -m src.kernel` writes one, with a stub for the built script.
STUB_SCRIPT = f'"""A test kernel: {SCRIPT_MARK}."""\nprint("hello")\n'
STUB_KERNEL_ID = f"{FAKE_USER}/digit-recognizer-dense-network"


def write_stub_kernel(folder: Path, **changes) -> Path:
    """A kernel folder holding `STUB_SCRIPT` and its metadata, with `changes` to the metadata."""
    folder.mkdir()
    (folder / "digit_recognizer.py").write_text(STUB_SCRIPT)
    metadata = {
        "id": STUB_KERNEL_ID,
        "title": "Digit Recognizer Dense Network",
        "code_file": "digit_recognizer.py",
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": False,
        "enable_internet": False,
        "competition_sources": ["digit-recognizer"],
    }
    (folder / "kernel-metadata.json").write_text(json.dumps({**metadata, **changes}))
    return folder
