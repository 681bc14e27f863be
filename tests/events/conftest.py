"""Fixtures for the event-delivery suite.

The AWS side is moto's standalone server (``moto[server]``) on loopback: SQS queues, an SNS
topic subscribed to a queue, an EventBridge rule forwarding ``aws.chime`` events to a queue.
moto runs Lambda functions in Docker, which this machine lacks, so Lambda delivery is checked at
the request level against a stub that speaks the Invoke API. Webhooks go to a receiver here
that checks every signature. carillon itself is the real binary, started with the standard AWS
variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_LAMBDA``, ...) pointing at them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import botocore.config
import pytest

AKID = "AKIDCARILLONDEV"
SECRET = "carillon-dev-secret"
REGION = "us-east-1"
MOTO_ACCOUNT = "123456789012"
WEBHOOK_SECRET = "events-suite-secret"


def pytest_configure(config):
    # Hermetic clients: nothing of the machine's AWS configuration may leak in.
    empty = Path(tempfile.gettempdir()) / "carillon-events-no-aws-config"
    for name in list(os.environ):
        if name.startswith("AWS_"):
            os.environ.pop(name)
    os.environ["AWS_CONFIG_FILE"] = str(empty)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(empty)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    for proxy in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(proxy, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def carillon_bin() -> Path:
    value = os.environ.get("CARILLON_BIN")
    if value:
        path = Path(value)
    else:
        repo = Path(__file__).resolve().parents[2]
        target = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
        if not target.is_absolute():
            target = repo / target
        path = target / "debug" / "carillon"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(f"carillon binary not found at {path}: build it or set CARILLON_BIN", returncode=2)
    return path


# ----- carillon -----


@dataclass
class Carillon:
    process: subprocess.Popen
    log_path: Path
    url: str = ""

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """A crash: SIGKILL, no chance to flush anything."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def chime(self):
        return boto3.client(
            "chime-sdk-meetings",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=AKID,
            aws_secret_access_key=SECRET,
            config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}),
        )


def start_carillon(data_dir: Path, env: dict[str, str], *args: str) -> Carillon:
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{time.monotonic_ns()}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CARILLON_", "AWS_"))}
    full_env.update(
        CARILLON_LOG="info,aws=warn,aws_smithy_runtime=warn,aws_config=warn",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.environ["AWS_CONFIG_FILE"],
        AWS_SHARED_CREDENTIALS_FILE=os.environ["AWS_SHARED_CREDENTIALS_FILE"],
    )
    full_env.update(env)
    command = [
        str(carillon_bin()),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--media-udp",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir / "data"),
        *args,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=full_env, text=True
        )
    server = Carillon(process=process, log_path=log_path)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.url:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            line = ""
        if line is None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"carillon did not start: {server.log()}")
        if line and line.startswith("api "):
            server.url = line.removeprefix("api ").strip()
    return server


# ----- moto (SQS, SNS, EventBridge) -----


@dataclass
class Moto:
    endpoint: str
    server: object

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def drain(self, queue_url: str) -> list[str]:
        """Every message body currently in the queue (received and deleted)."""
        sqs = self.client("sqs")
        bodies = []
        while True:
            out = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = out.get("Messages", [])
            if not messages:
                return bodies
            for m in messages:
                bodies.append(m["Body"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture(scope="module")
def moto():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield Moto(endpoint=f"http://127.0.0.1:{port}", server=server)
    server.stop()


# ----- HTTP receivers: the webhook and the Lambda Invoke stub -----


@dataclass
class Recorder:
    """A local HTTP server that records POSTs; answers ``status`` (503 while ``down``)."""

    status: int
    down: bool = False
    requests: list[dict] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.httpd is not None
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Recorder":
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with recorder.lock:
                    if recorder.down:
                        recorder.refused += 1
                        status = 503
                    else:
                        recorder.requests.append(
                            {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                        )
                        status = recorder.status
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.requests)


@pytest.fixture
def webhook():
    r = Recorder(status=200).start()
    yield r
    r.stop()


@pytest.fixture
def lambda_stub():
    # Lambda's Invoke with InvocationType=Event answers 202 Accepted.
    r = Recorder(status=202).start()
    yield r
    r.stop()


def signature_ok(headers: dict, body: bytes, secret: str = WEBHOOK_SECRET) -> bool:
    timestamp = headers["x-carillon-timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-carillon-signature"])


def wait_until(what: str, predicate, timeout: float = 45.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def dedupe(events: list[dict]) -> list[dict]:
    seen = set()
    out = []
    for e in events:
        if e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    return out


def parse(body: bytes | str) -> dict:
    return json.loads(body)
