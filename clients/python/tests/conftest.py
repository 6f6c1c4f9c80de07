"""Real `meshcast broker` processes for the tests, started the way the
Rust integration tests start them (broker/tests/common): a loopback port
chosen by the broker, read back from its first stdout line.

The `meshcast` binary is `$MESHCAST_BIN`, or else built here with
`cargo build --bin meshcast` (a no-op when it is up to date; in CI the
workspace tests built it already).

No test relies on timing for its verdict: `GUARD` only bounds how long a
condition may take before the test fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, TypeVar

import pytest

import meshcast

REPO = Path(__file__).resolve().parents[3]
GUARD = 30.0

T = TypeVar("T")


def meshcast_bin() -> str:
    env = os.environ.get("MESHCAST_BIN")
    if env:
        return env
    subprocess.run(
        ["cargo", "build", "--quiet", "--bin", "meshcast"], cwd=REPO, check=True
    )
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version=1", "--no-deps"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    target = json.loads(meta.stdout)["target_directory"]
    path = os.path.join(target, "debug", "meshcast")
    os.environ["MESHCAST_BIN"] = path
    return path


def run_cli(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [meshcast_bin(), *args], capture_output=True, text=True, timeout=GUARD
    )


class Broker:
    """A `meshcast broker` child process; `kill()` sends SIGKILL."""

    def __init__(self, sets: List[str], data_dir: Optional[str] = None):
        self.dir = data_dir or tempfile.mkdtemp(prefix="meshcast-py-broker-")
        cmd = [
            meshcast_bin(),
            "broker",
            "--data-dir",
            self.dir,
            "--listen",
            "127.0.0.1:0",
            "--set",
            "broker.peer_listen=127.0.0.1:0",
            "--set",
            "broker.admin_listen=127.0.0.1:0",
            "--set",
            "log.level=warn",
        ]
        for s in sets:
            cmd += ["--set", s]
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        # "meshcast broker ID listening on ADDR (CA PATH)"
        line = self.proc.stdout.readline()
        if " listening on " not in line:
            self.kill()
            raise RuntimeError(f"unexpected broker banner: {line!r}")
        self.addr = line.split(" listening on ")[1].split(" ")[0]
        admin = self.proc.stdout.readline()
        if not admin.startswith("admin endpoint on "):
            self.kill()
            raise RuntimeError(f"unexpected admin banner: {admin!r}")
        self.admin = admin[len("admin endpoint on ") :].split(" ")[0].strip()
        self.ca = os.path.join(self.dir, "ca.pem")
        # Keep draining stdout so the broker never blocks on a full pipe.
        out = self.proc.stdout
        threading.Thread(target=lambda: [None for _ in out], daemon=True).start()

    def status(self) -> Dict[str, Any]:
        with urllib.request.urlopen(f"http://{self.admin}/status", timeout=5) as r:
            doc: Dict[str, Any] = json.loads(r.read())
            return doc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, name: str, **kw: Any) -> meshcast.Connecting:
        return meshcast.connect(self.addr, ca=self.ca, name=name, **kw)


_given_ports: set[int] = set()


def free_udp_addr() -> str:
    """A loopback UDP port below the kernel's ephemeral range that was free
    a moment ago, for a broker that binds it later (as the Rust tests)."""
    for _ in range(10_000):
        port = random.randrange(20_000, 32_000)
        if port in _given_ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _given_ports.add(port)
        return f"127.0.0.1:{port}"
    raise RuntimeError("no free UDP port between 20000 and 32000")


#: Quick failure detection (shortens waits; no verdict depends on it).
FAST = [
    "mesh.heartbeat_ms=50",
    "mesh.suspect_timeout_ms=500",
    "mesh.flush_timeout_ms=800",
    "mesh.reconnect_max_ms=200",
    "limits.idle_timeout_ms=1000",
]


class Mesh:
    """Brokers b1..bn, each listing all the others, b1 starting the mesh;
    certificates from `meshcast certs`."""

    def __init__(self, n: int = 3, extra: Optional[List[str]] = None):
        self.certs = tempfile.mkdtemp(prefix="meshcast-py-certs-")
        names = [f"b{i + 1}" for i in range(n)]
        done = run_cli("certs", "--out", self.certs, *names)
        assert done.returncode == 0, done.stderr
        addrs = [free_udp_addr() for _ in names]
        self.ca = os.path.join(self.certs, "ca.pem")
        self.brokers: List[Broker] = []
        try:
            for i, name in enumerate(names):
                peers = ",".join(
                    f'{{id="{names[j]}",addr="{addrs[j]}"}}'
                    for j in range(n)
                    if j != i
                )
                sets = [
                    f"broker.id={name}",
                    f"broker.peer_listen={addrs[i]}",
                    f"tls.ca_cert={self.ca}",
                    f"tls.cert={os.path.join(self.certs, name + '.pem')}",
                    f"tls.key={os.path.join(self.certs, name + '-key.pem')}",
                    f"mesh.peers=[{peers}]",
                    f"mesh.bootstrap={'true' if i == 0 else 'false'}",
                    *FAST,
                    *(extra or []),
                ]
                b = Broker(sets)
                b.ca = self.ca
                self.brokers.append(b)
            for b in self.brokers:
                wait_until(partial(_mesh_ready, b, n), f"a {n}-broker view at {b.addr}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for b in self.brokers:
            b.stop()
        shutil.rmtree(self.certs, ignore_errors=True)


def _mesh_ready(b: Broker, n: int) -> bool:
    mesh = b.status()["core"]["mesh"]
    # No view yet while the broker is still joining its mesh.
    view = mesh.get("view")
    return view is not None and len(view[1]) == n and mesh["blocked"] is False


def wait_until(ok: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def within(aw: Awaitable[T], what: str = "the condition") -> T:
    """Awaits `aw`, failing the test (not hanging) after GUARD seconds."""
    try:
        return await asyncio.wait_for(aw, GUARD)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker([])
    yield b
    b.stop()


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    m = Mesh(3)
    yield m
    m.stop()
