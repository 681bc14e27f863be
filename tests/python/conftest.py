"""Fixtures for the Python compatibility suite.

Every test module gets its own real ``carillon`` process (ephemeral port, temporary data
directory, ``--test-clock``); the official clients — boto3 and the AWS CLI v1 — talk to it
unmodified, only pointed at it with ``endpoint_url`` / ``--endpoint-url``.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.config
import pytest

AKID = "AKIDCARILLONDEV"
SECRET = "carillon-dev-secret"
REGION = "us-east-1"
ACCOUNT = "000000000000"
NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"

_STARTUP_TIMEOUT = 30.0


def pytest_configure(config):
    # Keep the clients hermetic: no profile, config or credentials file of the machine may
    # change what they send.
    empty = Path(tempfile.gettempdir()) / "carillon-pytest-no-aws-config"
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS",
        "AWS_CA_BUNDLE",
    ):
        os.environ.pop(name, None)
    os.environ["AWS_CONFIG_FILE"] = str(empty)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(empty)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    for proxy in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(proxy, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


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
        pytest.exit(
            f"carillon binary not found at {path}: build it (cargo build -p carillon-server) "
            "or set CARILLON_BIN",
            returncode=2,
        )
    return path


@dataclass
class CarillonServer:
    """One running ``carillon serve`` process."""

    process: subprocess.Popen
    data_dir: tempfile.TemporaryDirectory
    log_path: Path
    url: str = ""
    media: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")

    @property
    def port(self) -> int:
        return int(self.host_port.rsplit(":", 1)[1])

    @property
    def ws_url(self) -> str:
        return "ws://" + self.host_port

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def advance_clock(self, seconds: int) -> dict:
        """Moves the server's lifecycle clock forward (``--test-clock`` only)."""
        request = urllib.request.Request(
            self.url + "/_carillon/test/clock",
            data=json.dumps({"seconds": seconds}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            body = response.read()
        return json.loads(body) if body.strip() else {}

    def healthz(self) -> int:
        with urllib.request.urlopen(self.url + "/healthz", timeout=10) as response:
            return response.status

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()
        self.data_dir.cleanup()


def start_carillon(*extra_args: str) -> CarillonServer:
    data_dir = tempfile.TemporaryDirectory(prefix="carillon-pytest-")
    log_path = Path(data_dir.name) / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARILLON_")}
    env["CARILLON_LOG"] = "error"
    command = [
        str(carillon_bin()),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--media-udp",
        "127.0.0.1:0",
        "--data-dir",
        str(Path(data_dir.name) / "data"),
        "--test-clock",
        *extra_args,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
        )
    server = CarillonServer(process=process, data_dir=data_dir, log_path=log_path)

    # Drain stdout on a thread so the process never blocks on a full pipe.
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, name="carillon-stdout", daemon=True).start()

    deadline = time.monotonic() + _STARTUP_TIMEOUT
    try:
        while not (server.url and server.media):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError("carillon did not print its endpoints in time")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"carillon exited early with code {process.wait()}")
            server.lines.append(line)
            if line.startswith("api "):
                server.url = line.removeprefix("api ").strip()
            elif line.startswith("media udp "):
                server.media = line.removeprefix("media udp ").strip()
    except Exception as error:
        server.stop()
        raise RuntimeError(
            f"{error}\ncommand: {command}\nstdout: {server.lines}\nstderr: {server.log()}"
        ) from error
    assert server.healthz() == 200
    return server


@pytest.fixture(scope="module")
def server():
    """A fresh carillon for each test module."""
    instance = start_carillon()
    yield instance
    crashed = instance.process.poll()
    log = instance.log()
    instance.stop()
    assert crashed is None, f"carillon exited during the tests (code {crashed}); stderr:\n{log}"


@pytest.fixture
def start_server():
    """Factory for extra servers with their own flags; stopped at the end of the test."""
    started: list[CarillonServer] = []

    def start(*args: str) -> CarillonServer:
        instance = start_carillon(*args)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


def make_client(server: CarillonServer, *, secret: str = SECRET, akid: str = AKID, region: str = REGION):
    """The unmodified boto3 client, pointed at ``server``, without retries."""
    return boto3.client(
        "chime-sdk-meetings",
        endpoint_url=server.url,
        region_name=region,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def client(server):
    return make_client(server)


@pytest.fixture(scope="module")
def client_factory():
    return make_client


class RawBodies:
    """Records the raw HTTP response bodies a boto3 client receives, before botocore parses
    them (botocore drops ``null`` members, so only the raw body shows them)."""

    def __init__(self, client):
        self.bodies: dict[str, list[bytes]] = {}
        client.meta.events.register("before-parse.chime-sdk-meetings", self._record)

    def _record(self, operation_model, response_dict, **_):
        self.bodies.setdefault(operation_model.name, []).append(response_dict["body"])

    def last(self, operation: str) -> bytes:
        return self.bodies[operation][-1]


@pytest.fixture
def raw_bodies(server):
    boto_client = make_client(server)
    return boto_client, RawBodies(boto_client)


def _aws_command() -> list[str]:
    script = Path(sys.executable).parent / "aws"
    if script.is_file():
        return [str(script)]
    found = shutil.which("aws", path=str(Path(sys.executable).parent))
    if found:
        return [found]
    return [sys.executable, "-m", "awscli"]


class AwsCli:
    """Runs ``aws chime-sdk-meetings <op> --endpoint-url … --output json``."""

    def __init__(self, server: CarillonServer):
        self.server = server
        self.command = _aws_command()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(
            AWS_ACCESS_KEY_ID=AKID,
            AWS_SECRET_ACCESS_KEY=SECRET,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=os.environ["AWS_CONFIG_FILE"],
            AWS_SHARED_CREDENTIALS_FILE=os.environ["AWS_SHARED_CREDENTIALS_FILE"],
            AWS_EC2_METADATA_DISABLED="true",
            AWS_MAX_ATTEMPTS="1",
            AWS_RETRY_MODE="standard",
            AWS_PAGER="",
        )

    def run(self, operation: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        command = [
            *self.command,
            "chime-sdk-meetings",
            operation,
            "--endpoint-url",
            self.server.url,
            "--output",
            "json",
            *args,
        ]
        return subprocess.run(
            command,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def __call__(self, operation: str, *args: str, expect_error: bool = False, env: dict | None = None):
        """Parsed JSON output (``{}`` for an empty one); with ``expect_error`` the failed
        ``CompletedProcess`` (non-zero exit, stderr kept) instead."""
        result = self.run(operation, *args, env=env)
        if expect_error:
            assert result.returncode != 0, f"aws {operation} should have failed: {result.stdout}"
            return result
        assert result.returncode == 0, (
            f"aws {operation} {' '.join(args)} exited {result.returncode}\n"
            f"stderr: {result.stderr}\nstdout: {result.stdout}"
        )
        return json.loads(result.stdout) if result.stdout.strip() else {}


@pytest.fixture(scope="module")
def aws(server):
    return AwsCli(server)
