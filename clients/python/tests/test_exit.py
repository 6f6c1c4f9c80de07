"""A program that ends right after its last operation (or with one
cancelled) exits cleanly: no client thread touches the interpreter while
it finalizes (that aborted such programs, about one exit in four, before
the bridge counted its operations and `atexit` waited for them)."""

from __future__ import annotations

import subprocess
import sys

from conftest import GUARD, Broker

PROGRAM = """
import asyncio, sys
import meshcast

async def main(addr: str, ca: str) -> None:
    async with meshcast.connect(addr, ca=ca) as c:
        sub = await c.subscribe("exit/*")
        pending = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0)
        pending.cancel()
        await c.publish("exit/x", b"bye")
        await c.flush()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_programs_exit_cleanly(broker: Broker) -> None:
    for _ in range(12):
        done = subprocess.run(
            [sys.executable, "-c", PROGRAM, broker.addr, broker.ca],
            capture_output=True,
            text=True,
            timeout=GUARD,
        )
        assert done.returncode == 0, done.stderr[-2000:]
