"""Fan-out benchmark of the Python client: one publisher, N subscribers
(each its own connection, all in this one asyncio process), messages of
one size; prints one JSON line per result with the fields of
`meshcast bench --json` (fanout), plus "client" and "mode".

    python clients/python/bench.py --messages 200000            # starts a broker
    python clients/python/bench.py --server 127.0.0.1:4700 --ca ca.pem
    python clients/python/bench.py --rust   # also `meshcast bench` on the same broker

Modes: "batches" reads with `Subscription.batches()` (a list per wake-up),
"iter" with `async for msg in sub` (one message per step). As in the Rust
benchmark the publisher stays at most `--window` messages ahead of the
slowest subscriber (the broker expels a subscriber that falls behind by
more than its queue, `limits.subscriber_queue`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import meshcast

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_meshcast() -> str:
    env = os.environ.get("MESHCAST_BIN")
    if env:
        return env
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    for profile in ("release", "debug"):
        path = os.path.join(target, profile, "meshcast")
        if os.path.exists(path):
            return path
    found = shutil.which("meshcast")
    if found:
        return found
    sys.exit("no meshcast binary: cargo build --release --bin meshcast, or set MESHCAST_BIN")


def start_broker(binary: str) -> Tuple[subprocess.Popen[str], str, str, str]:
    data = tempfile.mkdtemp(prefix="meshcast-bench-")
    proc = subprocess.Popen(
        [binary, "broker", "--data-dir", data, "--listen", "127.0.0.1:0",
         "--set", "broker.peer_listen=127.0.0.1:0", "--set", "broker.admin_listen=127.0.0.1:0",
         "--set", "log.level=warn"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if " listening on " not in line:
        proc.kill()
        sys.exit(f"unexpected broker banner: {line!r}")
    addr = line.split(" listening on ")[1].split(" ")[0]
    out = proc.stdout
    threading.Thread(target=lambda: [None for _ in out], daemon=True).start()
    return proc, addr, os.path.join(data, "ca.pem"), data


async def fanout(
    server: str, ca: Optional[str], size: int, messages: int, subscribers: int,
    window: int, mode: str, round_no: int,
) -> Dict[str, Any]:
    topic = f"bench/pyfanout/{round_no}"
    clients = [await meshcast.connect(server, ca=ca, name=f"bench-sub-{i}") for i in range(subscribers)]
    subs = [await c.subscribe(topic) for c in clients]
    counts = [0] * subscribers
    in_order = [True] * subscribers
    finished: List[float] = [0.0] * subscribers
    progress = asyncio.Event()

    async def read(i: int, sub: meshcast.Subscription) -> None:
        expected = None
        if mode == "batches":
            async for batch in sub.batches():
                for m in batch:
                    if expected is not None and m.seq != expected:
                        in_order[i] = False
                    expected = m.seq + 1
                counts[i] += len(batch)
                progress.set()
                if counts[i] >= messages:
                    break
        else:
            async for m in sub:
                if expected is not None and m.seq != expected:
                    in_order[i] = False
                expected = m.seq + 1
                counts[i] += 1
                if counts[i] % 256 == 0:
                    progress.set()
                if counts[i] >= messages:
                    break
        finished[i] = time.perf_counter()
        progress.set()

    pub_client = await meshcast.connect(server, ca=ca, name="bench-pub")
    publisher = pub_client.publisher(topic, ordering="fifo")
    payload = bytes([0xA5]) * size
    readers = [asyncio.ensure_future(read(i, s)) for i, s in enumerate(subs)]
    start = time.perf_counter()
    for i in range(messages):
        if i % 256 == 0:
            while i - min(counts) > window:
                progress.clear()
                await progress.wait()
        await publisher.publish(payload)
    await pub_client.flush()
    try:
        await asyncio.wait_for(asyncio.gather(*readers), 300)
    except asyncio.TimeoutError:
        pass
    rates = [
        (counts[i] / (finished[i] - start)) if finished[i] else 0.0 for i in range(subscribers)
    ]
    for c in [*clients, pub_client]:
        await c.close()
    last = max(finished) if all(finished) else time.perf_counter()
    return {
        "scenario": "fanout",
        "client": "python",
        "mode": mode,
        "size": size,
        "messages": messages,
        "subscribers": subscribers,
        "per_subscriber_msgs_per_s": [round(r, 1) for r in rates],
        "min_msgs_per_s": round(min(rates), 1),
        "min_mb_per_s": round(min(rates) * size / 1e6, 2),
        "all_arrived": all(c == messages for c in counts),
        "in_order": all(in_order),
        "elapsed_s": round(last - start, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", help="a running broker (default: start one)")
    p.add_argument("--ca", help="its CA")
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--subscribers", type=int, default=3)
    p.add_argument("--window", type=int, default=2000)
    p.add_argument("--mode", choices=["batches", "iter", "both"], default="both")
    p.add_argument("--rust", action="store_true", help="also run `meshcast bench` (fanout) on the same broker")
    a = p.parse_args()

    proc = None
    data = None
    server, ca = a.server, a.ca
    binary = None
    if server is None or a.rust:
        binary = find_meshcast()
    if server is None:
        assert binary is not None
        proc, server, ca, data = start_broker(binary)
    try:
        modes = ["batches", "iter"] if a.mode == "both" else [a.mode]
        for n, mode in enumerate(modes):
            result = asyncio.run(
                fanout(server, ca, a.size, a.messages, a.subscribers, a.window, mode, n)
            )
            print(json.dumps(result), flush=True)
        if a.rust:
            assert binary is not None
            cmd = [binary, "bench", "--scenario", "fanout", "--server", server,
                   "--sizes", str(a.size), "--messages", str(a.messages),
                   "--subscribers", str(a.subscribers), "--window", str(a.window), "--json"]
            if ca:
                cmd += ["--ca", ca]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                if line.startswith("{"):
                    doc = json.loads(line)
                    doc["client"] = "rust"
                    print(json.dumps(doc), flush=True)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        if data is not None:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
