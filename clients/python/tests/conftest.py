"""Fixtures: a real authzd, started from the built binary, on a database written by authzctl.

The binaries come from $AUTHZD and $AUTHZCTL, else from `swift build --show-bin-path` at the
repository root (clients/python/test.sh passes them). The conformance scenarios are read from
../shared/conformance beside the repository (or $AUTHZ_CONFORMANCE_DIR), at test time; a
missing folder fails the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _bin_dir() -> Path:
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=REPO, check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def binary(name: str) -> str:
    env = os.environ.get(name.upper())
    path = Path(env) if env else _bin_dir() / name
    if not path.is_file():
        pytest.fail(f"{name} not found at {path} (set ${name.upper()} or build the package)")
    return str(path)


def conformance_dir() -> Path:
    override = os.environ.get("AUTHZ_CONFORMANCE_DIR")
    directory = Path(override) if override else REPO.parent / "shared" / "conformance"
    return directory


def authzctl(*args: str, input: str | None = None) -> str:
    out = subprocess.run([binary("authzctl"), *args], input=input, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"authzctl {' '.join(args)} failed ({out.returncode}): {out.stderr}")
    return out.stdout


def authzctl_check(db: str, queries: list[dict]) -> list[dict]:
    """What `authzctl check --db` answers to the queries, one JSON object per line."""
    text = authzctl("check", "--db", db, input="".join(json.dumps(q) + "\n" for q in queries))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Daemon:
    """One authzd process serving `db` on `socket`; stop/start/restart keep the paths."""

    def __init__(self, db: str, socket: str, *extra: str):
        self.db = db
        self.socket = socket
        self.extra = extra
        self.process: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        self.process = subprocess.Popen(
            [binary("authzd"), "--db", self.db, "--socket", self.socket, "--log-level", "warning", *self.extra],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if os.path.exists(self.socket):
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"authzd exited with {self.process.returncode}")
            time.sleep(0.01)
        raise RuntimeError("authzd did not create its socket within 20 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if sig == signal.SIGKILL and os.path.exists(self.socket):
            os.unlink(self.socket)  # a killed daemon leaves its socket file behind

    def restart(self) -> None:
        self.stop()
        self.start()


def write_workspace(tmp: Path, workspace: dict, name: str = "ws") -> str:
    db = tmp / f"{name}.db"
    document = tmp / f"{name}.json"
    document.write_text(json.dumps(workspace))
    authzctl("import", "--db", str(db), str(document))
    return str(db)


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("demo")
    db = str(directory / "demo.db")
    authzctl("demo", "--db", db)
    return db


@pytest.fixture(scope="session")
def demo_daemon(demo_db, tmp_path_factory):
    # A short socket path: sun_path holds at most 107 bytes.
    directory = Path(os.environ.get("AUTHZ_PYTEST_SOCKET_DIR", "/tmp"))
    socket = str(directory / f"authz-py-{os.getpid()}-demo.sock")
    daemon = Daemon(demo_db, socket).start()
    yield daemon
    daemon.stop()


@pytest.fixture
def own_daemon(tmp_path, demo_db):
    """A daemon of its own (to stop and restart), on a copy of the demo database."""
    db = str(tmp_path / "demo.db")
    shutil.copy(demo_db, db)
    socket = f"/tmp/authz-py-{os.getpid()}-{tmp_path.name[-12:]}.sock"
    daemon = Daemon(db, socket).start()
    yield daemon
    daemon.stop()
