"""One broker: publish/subscribe with globs, requests, bad input, closing
and cancellation."""

from __future__ import annotations

import asyncio
import time
from typing import List

import pytest

import meshcast
from conftest import Broker, within


async def read_until(sub: meshcast.Subscription, last: bytes) -> List[meshcast.Message]:
    """Reads messages up to and including the one whose payload is `last`."""
    got: List[meshcast.Message] = []

    async def go() -> None:
        async for m in sub:
            got.append(m)
            if m.payload == last:
                return
        raise AssertionError("subscription ended")

    await within(go(), f"message {last!r}")
    return got


def test_pub_sub_with_globs(broker: Broker) -> None:
    async def main() -> None:
        async with broker.connect("py-sub") as sub_client, broker.connect("py-pub") as pub_client:
            deep = await sub_client.subscribe("orders/**")
            created = await sub_client.subscribe("orders/*/created")
            assert deep.pattern == "orders/**"
            eu = pub_client.publisher("orders/eu/created", ordering="fifo")
            us = pub_client.publisher("orders/us/shipped")
            other = pub_client.publisher("stock/eu/created")
            deep_eu = pub_client.publisher("orders/eu/x/created")
            for i in range(50):
                await eu.publish(f"eu {i}".encode())
                await us.publish(f"us {i}")  # str goes as UTF-8
                await other.publish(b"never")
                await deep_eu.publish(bytearray(b"deep"))
            # One publisher's fifo messages arrive in order: the sentinel,
            # matching both patterns, comes after everything before it.
            await eu.publish(b"end")
            await pub_client.flush()

            got = await read_until(deep, b"end")
            assert [m.payload for m in got if m.topic == "orders/eu/created"] == [
                f"eu {i}".encode() for i in range(50)
            ] + [b"end"]
            assert [m.payload for m in got if m.topic == "orders/us/shipped"] == [
                f"us {i}".encode() for i in range(50)
            ]
            assert sum(m.topic == "orders/eu/x/created" for m in got) == 50
            assert all(not m.topic.startswith("stock/") for m in got)
            assert all(isinstance(m.payload, bytes) for m in got)
            assert {m.publisher for m in got} == {pub_client.publisher_id}
            seqs = [m.seq for m in got]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

            got = await read_until(created, b"end")
            # `*` stays within one segment: orders/eu/x/created is not here.
            assert {m.topic for m in got} == {"orders/eu/created"}
            assert len(got) == 51

    asyncio.run(main())


def test_events_batches_and_unsubscribe(broker: Broker) -> None:
    async def main() -> None:
        async with broker.connect("py") as client:
            sub = await client.subscribe("a/*")
            p = client.publisher("a/b")
            for i in range(1000):
                await p.publish(i.to_bytes(4, "big"))
            await p.publish(b"end")
            n = 0
            async def drain() -> None:
                nonlocal n
                async for batch in sub.batches():
                    for m in batch:
                        if m.payload == b"end":
                            return
                        assert int.from_bytes(m.payload, "big") == n
                        n += 1
            await within(drain())
            assert n == 1000
            await p.publish(b"x")
            events = sub.events()
            first = await within(events.__anext__())
            assert isinstance(first, meshcast.Message) and first.payload == b"x"
            await within(sub.unsubscribe())
            # After unsubscribing, the stream ends.
            assert await within(sub.next_event()) is None

    asyncio.run(main())


def test_request_reply_gather(broker: Broker) -> None:
    async def main() -> None:
        async with broker.connect("a") as a, broker.connect("b") as b, broker.connect("c") as c:
            async def serve(client: meshcast.Client, name: bytes) -> None:
                sub = await client.subscribe("svc/echo")
                ready.set()
                async for m in sub:
                    await client.reply(m, name + b":" + m.payload)

            ready = asyncio.Event()
            t1 = asyncio.create_task(serve(b, b"b"))
            await ready.wait()
            ready.clear()
            t2 = asyncio.create_task(serve(c, b"c"))
            await ready.wait()

            first = await within(a.request("svc/echo", b"hi", gather="first", timeout=10))
            assert len(first) == 1 and first[0].payload in (b"b:hi", b"c:hi")
            two = await within(a.request("svc/echo", b"yo", gather=2, timeout=20))
            assert sorted(m.payload for m in two) == [b"b:yo", b"c:yo"]
            every = await within(a.request("svc/echo", b"all", gather="all", timeout=1))
            assert sorted(m.payload for m in every) == [b"b:all", b"c:all"]

            with pytest.raises(meshcast.NoResponders) as e:
                await a.request("svc/nobody", b"?", timeout=0.2)
            assert e.value.topic == "svc/nobody"
            assert isinstance(e.value, TimeoutError)
            with pytest.raises(ValueError):
                await a.request("svc/echo", b"?", gather=0)
            t1.cancel()
            t2.cancel()

    asyncio.run(main())


def test_bad_input_raises_the_right_exception(broker: Broker, tmp_path: object) -> None:
    async def main() -> None:
        async with broker.connect("py") as client:
            with pytest.raises(meshcast.InvalidTopic) as t:
                client.publisher("orders/*/x")
            assert isinstance(t.value, ValueError)
            assert isinstance(t.value, meshcast.MeshcastError)
            with pytest.raises(meshcast.InvalidTopic):
                client.publisher("orders//x")
            with pytest.raises(meshcast.InvalidPattern):
                await client.subscribe("orders/[")
            with pytest.raises(ValueError, match="unknown ordering"):
                client.publisher("orders/x", ordering="sorted")  # type: ignore[arg-type]
            p = client.publisher("orders/x")
            with pytest.raises(meshcast.PayloadTooLarge) as big:
                await p.publish(b"x" * (1024 * 1024 + 1))
            assert big.value.size == 1024 * 1024 + 1
            assert big.value.max == 1024 * 1024
            with pytest.raises(TypeError):
                await p.publish(12)  # type: ignore[arg-type]
            # Groups need a broker in mesh mode: refused, the session stays.
            with pytest.raises(meshcast.MeshcastError):
                await within(client.join("inventory"))
            await within(client.flush())

        with pytest.raises(meshcast.InvalidAddress) as a:
            await meshcast.connect("no-port-here")
        assert a.value.addr == "no-port-here"
        with pytest.raises(meshcast.TlsError):
            await meshcast.connect(broker.addr, ca="/nonexistent/ca.pem")
        other = Broker([])
        try:
            with pytest.raises(meshcast.ConnectError) as c:
                await within(meshcast.connect(broker.addr, ca=other.ca))
            assert c.value.cause == "unknown_ca"
            assert isinstance(c.value, ConnectionError)
        finally:
            other.stop()
        with pytest.raises(meshcast.ConnectError) as c:
            await within(
                meshcast.connect(broker.addr, ca=broker.ca, server_name="not-this-broker")
            )
        assert c.value.cause == "server_name"

    asyncio.run(main())


def test_closed_client_raises_closed(broker: Broker) -> None:
    async def main() -> None:
        client = await broker.connect("py")
        p = client.publisher("x/y")
        sub = await client.subscribe("x/*")
        await client.close()
        with pytest.raises(meshcast.Closed):
            await p.publish(b"late")
        assert await within(sub.next_event()) is None
        assert isinstance(client.close_reason(), meshcast.Closed)

    asyncio.run(main())


def test_cancelling_a_read_loses_nothing(broker: Broker) -> None:
    async def main() -> None:
        async with broker.connect("py") as client:
            sub = await client.subscribe("c/*")
            p = client.publisher("c/d")
            # A read cancelled while it waits ...
            reader = asyncio.ensure_future(sub.__anext__())
            await asyncio.sleep(0)
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            # ... and reads cut short by a timeout, many times, while
            # messages arrive: every message is still read once, in order.
            for i in range(300):
                await p.publish(str(i))
            got: List[bytes] = []
            deadline = time.monotonic() + 30
            while len(got) < 300 and time.monotonic() < deadline:
                try:
                    m = await asyncio.wait_for(sub.__anext__(), 0.001)
                    got.append(m.payload)
                except asyncio.TimeoutError:
                    pass
            assert got == [str(i).encode() for i in range(300)]

            # Cancelling a request stops it (its timeout is far away).
            start = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.request("c/nobody", b"?", timeout=600), 0.2)
            assert time.monotonic() - start < GUARD_SHORT
            # The session is still fine.
            await within(client.flush())

    asyncio.run(main())


GUARD_SHORT = 20.0


def test_several_addresses_are_tried_in_order(broker: Broker) -> None:
    from conftest import free_udp_addr

    async def main() -> None:
        nobody = free_udp_addr()  # nothing listens there
        async with meshcast.connect([nobody, broker.addr], ca=broker.ca, connect_timeout=1.0) as c:
            assert broker.addr in c.server
            assert c.session_id >= 1 and c.broker_id
            sub = await c.subscribe("multi/*")
            await c.publish("multi/x", b"ok")
            assert (await within(sub.__anext__())).payload == b"ok"
        with pytest.raises(meshcast.ConnectError) as e:
            await meshcast.connect(nobody, ca=broker.ca, connect_timeout=0.5)
        assert e.value.cause == "no_answer"

    asyncio.run(main())
