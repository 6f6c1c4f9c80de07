"""Authentication, permissions and publish rate limits as a Python user
meets them: each refusal is its own exception class, and the session stays
usable after a refused operation."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Iterator, List, Tuple

import pytest

import meshcast
from conftest import GUARD, Broker, meshcast_bin, within

SECRET = "py-test-secret-4bd1"
BOSS_SECRET = "py-test-boss-77c2"


def token_hash(secret: str) -> str:
    """The stored form of `secret`, from `meshcast auth hash` (stdin)."""
    done = subprocess.run(
        [meshcast_bin(), "auth", "hash"],
        input=secret + "\n",
        capture_output=True,
        text=True,
        timeout=GUARD,
    )
    assert done.returncode == 0, done.stderr
    stored = done.stdout.strip()
    assert stored.startswith("$argon2id$"), stored
    assert secret not in stored
    return stored


@pytest.fixture(scope="module")
def secured() -> Iterator[Broker]:
    """A broker where alice may publish and subscribe under `orders/**`
    only, and boss may publish anywhere (both by token)."""
    alice, boss = token_hash(SECRET), token_hash(BOSS_SECRET)
    b = Broker(
        [
            f'auth.users=[{{name="alice",token_hashes=["{alice}"]}},'
            f'{{name="boss",token_hashes=["{boss}"]}}]',
            'permissions=[{name="alice-orders",users=["alice"],'
            'allow=["publish","subscribe"],topics=["orders/**"]},'
            '{name="boss-all",users=["boss"],allow=["publish"],topics=["**"]}]',
        ]
    )
    yield b
    b.stop()


def test_without_or_with_a_wrong_token_the_session_is_refused(secured: Broker) -> None:
    async def main() -> None:
        for token in [None, "alice:not-the-secret", "mallory:" + SECRET]:
            with pytest.raises(meshcast.Unauthenticated) as refused:
                await within(secured.connect("py-stranger", token=token), "the refusal")
            # The reason never echoes a secret.
            assert SECRET not in str(refused.value)
            assert "not-the-secret" not in str(refused.value)
            assert isinstance(refused.value, ConnectionError)

    asyncio.run(main())


def test_a_denied_topic_raises_permission_denied_and_is_never_delivered(
    secured: Broker,
) -> None:
    async def main() -> None:
        async with secured.connect("py-alice", token="alice:" + SECRET) as c, secured.connect(
            "py-boss", token="boss:" + BOSS_SECRET
        ) as boss:
            with pytest.raises(meshcast.PermissionDenied) as denied:
                await c.subscribe("hr/payroll")
            assert "alice" in denied.value.reason and "subscribe" in denied.value.reason
            with pytest.raises(meshcast.PermissionDenied) as denied:
                await c.publisher("hr/payroll").publish_confirmed(b"x")
            assert "hr/payroll" in denied.value.reason
            # A wildcard-first pattern is accepted but filtered: what alice
            # may not read never reaches her.
            everything = await c.subscribe("**")
            await boss.publisher("hr/payroll", ordering="fifo").publish_confirmed(b"salaries")
            await boss.publisher("orders/eu", ordering="fifo").publish_confirmed(b"by boss")
            # Allowed operations still work on the same session.
            await c.publisher("orders/eu").publish_confirmed(b"by alice")
            got: List[Tuple[str, bytes]] = []
            while len(got) < 2:
                m = await within(everything.__anext__(), "the allowed messages")
                got.append((m.topic, m.payload))
            assert sorted(got) == [("orders/eu", b"by alice"), ("orders/eu", b"by boss")]

    asyncio.run(main())


def test_publishing_faster_than_the_rate_raises_rate_limited() -> None:
    b = Broker(["limits.publish_messages_per_s=1", "limits.publish_burst=3"])
    try:

        async def main() -> None:
            async with b.connect("py-fast") as c:
                p = c.publisher("fast/x", ordering="fifo")
                confirmed = 0
                refused = None
                # A burst of 3 at 1/s: among 30 back-to-back publishes some
                # must be refused, however slow the machine.
                for _ in range(30):
                    try:
                        await p.publish_confirmed(b"x")
                        confirmed += 1
                    except meshcast.RateLimited as e:
                        refused = e
                        break
                assert refused is not None, f"{confirmed} publishes all passed 1/s"
                assert "limits.publish_messages_per_s" in refused.reason
                assert confirmed >= 3
                # The session is still open: a subscription works.
                sub = await c.subscribe("fast/**")
                assert sub.pattern == "fast/**"

        asyncio.run(main())
    finally:
        b.stop()
