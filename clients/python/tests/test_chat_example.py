"""The Python chat example (examples/python/chat.py) and the Rust one
(examples/src/bin/chat.rs) in one room, on two brokers of a mesh."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import IO, List

from conftest import GUARD, REPO, Mesh


def cargo_bin(name: str, package: str) -> str:
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", package, "--bin", name], cwd=REPO, check=True
    )
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version=1", "--no-deps"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return os.path.join(json.loads(meta.stdout)["target_directory"], "debug", name)


class Program:
    """A child process whose stdout lines are read into a queue."""

    def __init__(self, cmd: List[str]):
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
        )
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: List[str] = []
        out = self.proc.stdout
        assert out is not None

        def pump(f: IO[str]) -> None:
            for line in f:
                self.lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, args=(out,), daemon=True).start()

    def expect(self, wanted: str) -> None:
        deadline = time.monotonic() + GUARD
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"never printed {wanted!r}; printed {self.seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line == wanted:
                return

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_python_chat_talks_to_rust_chat() -> None:
    chat_rs = cargo_bin("chat", "meshcast-examples")
    mesh = Mesh(2)
    alice = bob = None
    try:
        b1, b2 = mesh.brokers
        alice = Program([chat_rs, "--server", b1.addr, "--ca", mesh.ca, "--name", "alice", "--room", "pyroom"])
        alice.expect("* you are in room pyroom with 1 member(s)")
        bob = Program(
            [
                sys.executable,
                os.path.join(REPO, "examples", "python", "chat.py"),
                "--server", b2.addr, "--ca", mesh.ca, "--name", "bob", "--room", "pyroom",
            ]
        )
        bob.expect("* you are in room pyroom with 2 member(s)")
        alice.expect("* bob joined")
        bob.say("hi from bob")
        alice.expect("bob: hi from bob")
        bob.expect("bob: hi from bob")
        alice.say("hi from alice")
        bob.expect("alice: hi from alice")
        alice.expect("alice: hi from alice")
        # End of input: bob leaves, and alice sees it.
        assert bob.proc.stdin is not None
        bob.proc.stdin.close()
        assert bob.proc.wait(timeout=GUARD) == 0
        alice.expect("* bob left")
    finally:
        for p in (alice, bob):
            if p is not None:
                p.stop()
        mesh.stop()
