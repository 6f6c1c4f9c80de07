"""A chat room over a meshcast mesh, in Python; it talks to the Rust chat
example (examples/src/bin/chat.rs) in the same room, with the same
protocol:

- lines typed on stdin are published, in total order, to
  ``chat/<room>/<name>``; a glob subscription ``chat/<room>/**`` prints
  everyone's lines in one order, the same for every participant;
- the subscription is a member of the ``chat`` group, whose views say who
  is here (by member id, ``b1/s2``); each participant announces its name
  for its member id on ``chat/<room>/_names/<name>`` when it arrives and
  whenever someone joins, so newcomers learn the names.

    python examples/python/chat.py --server 127.0.0.1:4810 \\
        --ca examples/mesh/certs/ca.pem --name carol --room lobby
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from typing import Dict, List, Optional, Set, Tuple

import meshcast

NAMES = "_names"


class Roster:
    """Who is in the room, by name (the Rust example's `Roster`)."""

    def __init__(self, name: str, view: Optional[meshcast.View]):
        self.name = name
        self.me: Optional[str] = None
        self.seen: Set[str] = set()
        self.names: Dict[str, str] = {}
        self.unnamed: Set[str] = set()
        if view is not None:
            self.seen = set(view.members)
            self.me = view.members[view.rank]
            self.names[self.me] = name

    def view(self, v: meshcast.View) -> Tuple[List[str], Optional[str]]:
        """The lines to print for a new view, and the member id to announce
        (``None``: no announcement needed)."""
        now = set(v.members)
        lines: List[str] = []
        someone_new = False
        for m in sorted(now - self.seen):
            if m == self.me:
                continue
            someone_new = True
            if m in self.names:
                lines.append(f"* {self.names[m]} joined")
            else:
                self.unnamed.add(m)
        for m in sorted(self.seen - now):
            self.unnamed.discard(m)
            if m == self.me:
                continue  # this participant under its old id (a rejoin)
            lines.append(f"* {self.names.get(m, m)} left")
        self.seen = now
        me = v.members[v.rank]
        announce = None
        if self.me != me or someone_new:
            self.names[me] = self.name
            self.me = me
            announce = me
        return lines, announce

    def announced(self, member: str, name: str) -> Optional[str]:
        self.names[member] = name
        if member in self.unnamed:
            self.unnamed.discard(member)
            return f"* {name} joined"
        return None


def stdin_lines(loop: asyncio.AbstractEventLoop) -> "asyncio.Queue[Optional[str]]":
    """stdin's lines on a queue (None at the end), read by a daemon thread
    (a blocking read must not keep the program from exiting)."""
    queue: "asyncio.Queue[Optional[str]]" = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()
    return queue


async def chat(servers: str, ca: str, name: str, room_name: str) -> None:
    async with meshcast.connect(servers, ca=ca, name=name) as client:
        room = await client.subscribe(f"chat/{room_name}/**")
        me = client.publisher(f"chat/{room_name}/{name}", ordering="total")
        hello = client.publisher(f"chat/{room_name}/{NAMES}/{name}", ordering="total")
        roster = Roster(name, room.view("chat"))
        if roster.me is not None:
            await hello.publish(roster.me)
        print(f"* you are in room {room_name} with {len(roster.seen)} member(s)", flush=True)

        lines = stdin_lines(asyncio.get_running_loop())

        async def send() -> None:
            while (line := await lines.get()) is not None:
                await me.publish(line)

        sender = asyncio.ensure_future(send())
        try:
            events = room.events()
            reader = asyncio.ensure_future(events.__anext__())
            while True:
                done, _ = await asyncio.wait(
                    {reader, sender}, return_when=asyncio.FIRST_COMPLETED
                )
                if sender in done:
                    sender.result()
                    break
                try:
                    event = reader.result()
                except StopAsyncIteration:
                    break
                if isinstance(event, meshcast.Message):
                    path = event.topic.split("/")
                    who = path[-1]
                    if len(path) >= 2 and path[-2] == NAMES:
                        said = roster.announced(event.payload.decode(errors="replace"), who)
                        if said:
                            print(said, flush=True)
                    else:
                        print(f"{who}: {event.payload.decode(errors='replace')}", flush=True)
                elif isinstance(event, meshcast.View):
                    said_lines, announce = roster.view(event)
                    for said in said_lines:
                        print(said, flush=True)
                    if announce is not None:
                        await hello.publish(announce)
                elif isinstance(event, meshcast.BlockedEvent):
                    print("* blocked: this broker is cut off from the rest of the mesh", flush=True)
                elif isinstance(event, meshcast.UnblockedEvent):
                    print("* back: nothing was missed", flush=True)
                elif isinstance(event, meshcast.Rejoined):
                    print(f"* back as {event.member}: lines sent meanwhile may be missing", flush=True)
                reader = asyncio.ensure_future(events.__anext__())
            reader.cancel()
            await client.flush()
            # Leave the room now, so the others see this member go at once.
            await room.unsubscribe()
        finally:
            sender.cancel()


def main() -> None:
    p = argparse.ArgumentParser(description="meshcast chat (Python)")
    p.add_argument("--server", default="127.0.0.1:4810", help="broker(s), comma-separated")
    p.add_argument("--ca", default="examples/mesh/certs/ca.pem")
    p.add_argument("--name", default="anonymous")
    p.add_argument("--room", default="lobby")
    a = p.parse_args()
    try:
        asyncio.run(chat(a.server, a.ca, a.name, a.room))
    except meshcast.MeshcastError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
