"""meshcast for asyncio: publish/subscribe and process groups with virtual
synchrony, over the Rust client (one implementation of the wire protocol).

>>> import asyncio, meshcast
>>> async def main() -> None:
...     async with meshcast.connect("127.0.0.1:4700", ca="ca.pem") as client:
...         sub = await client.subscribe("orders/**")
...         orders = client.publisher("orders/eu/created", ordering="total")
...         await orders.publish(b"order 1")
...         async for msg in sub:
...             print(msg.topic, msg.payload)
...             break

Every wait runs on the Rust client's own threads with the GIL released;
cancelling the asyncio task that awaits an operation cancels that
operation, as dropping a future does in Rust (a publish already queued is
not taken back). Subscriptions and groups are read in batches: one wake-up
takes every event already received.
"""

from __future__ import annotations

import atexit
import inspect
from collections import deque
from types import TracebackType
from typing import (
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Generator,
    List,
    Literal,
    Optional,
    Sequence,
    Type,
    Union,
)

from . import _native
from ._native import (
    BlockedEvent,
    Checkpoint,
    Confirmation,
    GroupMessage,
    Message,
    Reconnected,
    Rejoined,
    StateRequest,
    UnblockedEvent,
    View,
)
from .errors import (
    Blocked,
    Closed,
    ConnectError,
    ConnectionLost,
    EncodeError,
    Expelled,
    HandshakeError,
    InvalidAddress,
    InvalidPattern,
    InvalidTopic,
    MeshcastError,
    NoResponders,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    Rejected,
    SlowSubscription,
    TimedOut,
    TlsError,
    Unauthenticated,
)

__version__: str = _native.version()

# Let the client's threads finish handing over results before the
# interpreter finalizes (one that touches Python then would abort it).
atexit.register(_native.drain, 2.0)

__all__ = [
    "connect",
    "Client",
    "Connecting",
    "Publisher",
    "Subscription",
    "Group",
    "Payload",
    "OrderingName",
    "Gather",
    "SubscriptionEvent",
    "GroupEvent",
    "StateProvider",
    "Message",
    "View",
    "GroupMessage",
    "Checkpoint",
    "StateRequest",
    "BlockedEvent",
    "UnblockedEvent",
    "Rejoined",
    "Reconnected",
    "Confirmation",
    "MeshcastError",
    "InvalidTopic",
    "InvalidPattern",
    "PayloadTooLarge",
    "TlsError",
    "InvalidAddress",
    "ConnectError",
    "ConnectionLost",
    "NoResponders",
    "TimedOut",
    "HandshakeError",
    "EncodeError",
    "SlowSubscription",
    "Expelled",
    "Blocked",
    "Rejected",
    "Closed",
    "Unauthenticated",
    "PermissionDenied",
    "RateLimited",
]

#: What can be published: ``bytes``, or ``str`` (sent as UTF-8), or
#: anything ``bytes()`` accepts.
Payload = Union[bytes, bytearray, memoryview, str]
#: A publisher's declared ordering.
OrderingName = Literal["reliable", "fifo", "causal", "total"]
#: How many answers a request waits for: the first, all before the
#: timeout, or a count.
Gather = Union[Literal["first", "all"], int]
#: What :meth:`Subscription.events` yields.
SubscriptionEvent = Union[
    Message, View, BlockedEvent, UnblockedEvent, Rejoined, Reconnected
]
#: What iterating a :class:`Group` yields.
GroupEvent = Union[
    View,
    GroupMessage,
    Checkpoint,
    StateRequest,
    BlockedEvent,
    UnblockedEvent,
    Rejoined,
    Reconnected,
]
#: A state provider: returns this member's state (or an awaitable of it).
StateProvider = Callable[[], Union[Payload, Awaitable[Payload]]]


class _Reader:
    """Batched reading of a native stream: ``take()`` hands over what the
    native buffer holds, ``fill()`` waits for more without the GIL."""

    __slots__ = ("_native", "_buf", "_done")

    def __init__(self, native: Union[_native.NativeSubscription, _native.NativeGroup]):
        self._native = native
        self._buf: Deque[object] = deque()
        self._done = False

    async def next(self) -> Optional[object]:
        buf = self._buf
        while not buf:
            if self._done:
                return None
            batch = self._native.take()
            if batch is None:
                self._done = True
                return None
            if batch:
                buf.extend(batch)
                break
            await self._native.fill()
        return buf.popleft()

    async def batch(self) -> Optional[List[object]]:
        if self._buf:
            out = list(self._buf)
            self._buf.clear()
            return out
        while not self._done:
            batch = self._native.take()
            if batch is None:
                self._done = True
                return None
            if batch:
                return batch
            await self._native.fill()
        return None


class Publisher:
    """Publishes to one topic with a fixed declaration (made by
    :meth:`Client.publisher`)."""

    __slots__ = ("_native",)

    def __init__(self, native: _native.NativePublisher):
        self._native = native

    @property
    def topic(self) -> str:
        return self._native.topic

    @property
    def ordering(self) -> str:
        return self._native.ordering

    @property
    def safe(self) -> bool:
        return self._native.safe

    async def publish(self, payload: Payload) -> None:
        """Queues one message for sending (waits only while the client's
        outbox is full). Refusals are reported by :meth:`Client.flush`."""
        if not self._native.try_publish(payload):
            await self._native.publish(payload)

    async def publish_confirmed(self, payload: Payload) -> Confirmation:
        """Publishes and waits for the broker's confirmation: acceptance,
        or for a ``safe`` publisher, stability (every surviving member will
        deliver it). A refusal raises (:class:`Blocked`, :class:`Rejected`);
        a lost connection raises :class:`ConnectionLost` (outcome unknown)."""
        return await self._native.publish_confirmed(payload)

    def __repr__(self) -> str:
        safe = "+safe" if self.safe else ""
        return f"<meshcast.Publisher {self.topic} {self.ordering}{safe}>"


class Subscription:
    """The messages matching one pattern, in delivery order.

    ``async for msg in sub`` yields :class:`Message` objects only;
    :meth:`events` also yields the views of the groups the pattern reaches
    and the mesh events (:class:`BlockedEvent`, ...) in their place. If the
    subscription ends abnormally the iteration raises why (e.g.
    :class:`SlowSubscription`, :class:`Expelled`), then ends.
    """

    __slots__ = ("_native", "_reader", "_views")

    def __init__(self, native: _native.NativeSubscription):
        self._native = native
        self._reader = _Reader(native)
        self._views = {v.group: v for v in native.views}

    @property
    def pattern(self) -> str:
        return self._native.pattern

    @property
    def views(self) -> List[View]:
        """The latest view of each group the pattern reaches, as of the last
        event read (right after subscribing: the views it was installed
        in). Empty on a single broker."""
        return list(self._views.values())

    def view(self, group: str) -> Optional[View]:
        """The latest view of ``group``, if the pattern reaches it."""
        return self._views.get(group)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        while True:
            event = await self._reader.next()
            if event is None:
                raise StopAsyncIteration
            if type(event) is Message:
                return event
            if type(event) is View:
                self._views[event.group] = event

    async def next_event(self) -> Optional[SubscriptionEvent]:
        """The next message, view or mesh event; ``None`` once ended."""
        event = await self._reader.next()
        if type(event) is View:
            self._views[event.group] = event
        return event  # type: ignore[return-value]

    async def events(self) -> AsyncIterator[SubscriptionEvent]:
        """Messages, views and mesh events, in order."""
        while True:
            event = await self.next_event()
            if event is None:
                return
            yield event

    async def batches(self) -> AsyncIterator[List[Message]]:
        """The messages in the batches they arrived in (for throughput);
        views and mesh events are left out (but update :attr:`views`)."""
        while True:
            batch = await self._reader.batch()
            if batch is None:
                return
            out: List[Message] = []
            for event in batch:
                if type(event) is Message:
                    out.append(event)
                elif type(event) is View:
                    self._views[event.group] = event
            if out:
                yield out

    async def unsubscribe(self) -> None:
        """Ends the subscription (a pending read ends too) and waits until
        the broker removed it (:class:`TimedOut` otherwise)."""
        await self._native.unsubscribe()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.unsubscribe()

    def __repr__(self) -> str:
        return f"<meshcast.Subscription {self.pattern!r}>"


class Group:
    """Membership of one process group (made by :meth:`Client.join`).

    ``async for event in group`` yields its :class:`View` s and
    :class:`GroupMessage` s in one order, the same at every member, and the
    mesh events. A group joined with a state provider answers state
    requests of joining members itself, when the iteration reaches them
    (so the provider sees the state at exactly that point of the stream);
    without one the iteration yields :class:`StateRequest` s to answer.
    """

    __slots__ = ("_native", "_reader", "_view", "_checkpoint", "_provider")

    def __init__(
        self,
        native: _native.NativeGroup,
        checkpoint: Optional[bytes],
        provider: Optional[StateProvider],
    ):
        self._native = native
        self._reader = _Reader(native)
        self._view = native.view
        self._checkpoint = checkpoint
        self._provider = provider

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def view(self) -> View:
        """The latest view this member has read."""
        return self._view

    @property
    def checkpoint(self) -> Optional[bytes]:
        """The state received when joining with a provider (``None`` for
        the group's first member, or without a provider); replaced by a
        later :class:`Checkpoint` event (after a rejoin or reconnect)."""
        return self._checkpoint

    def __aiter__(self) -> Group:
        return self

    async def __anext__(self) -> GroupEvent:
        while True:
            event = await self._reader.next()
            if event is None:
                raise StopAsyncIteration
            kind = type(event)
            if kind is View:
                self._view = event  # type: ignore[assignment]
            elif kind is Checkpoint:
                self._checkpoint = event.state  # type: ignore[attr-defined]
            elif kind is StateRequest and self._provider is not None:
                state = self._provider()
                if inspect.isawaitable(state):
                    state = await state
                event.reply(state)  # type: ignore[attr-defined]
                continue
            return event  # type: ignore[return-value]

    async def multicast(
        self, payload: Payload, ordering: OrderingName = "total", safe: bool = False
    ) -> None:
        """Sends a message to every member (queued; refusals are reported by
        :meth:`Client.flush`)."""
        if not self._native.try_multicast(payload, ordering, safe):
            await self._native.multicast(payload, ordering, safe)

    async def multicast_confirmed(
        self, payload: Payload, ordering: OrderingName = "total", safe: bool = False
    ) -> Confirmation:
        """Sends a message to every member and waits for the broker's
        confirmation (with ``safe``, stability)."""
        return await self._native.multicast_confirmed(payload, ordering, safe)

    async def leave(self) -> None:
        """Leaves the group (a pending read ends) and waits until the broker
        removed the member (:class:`TimedOut` otherwise)."""
        await self._native.leave()

    async def __aenter__(self) -> Group:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.leave()

    def __repr__(self) -> str:
        return f"<meshcast.Group {self.name!r} view {self._view.id}>"


class Client:
    """A session with a broker (or, given several, with one after another:
    after a lost connection the client moves to the next one and the
    streams yield :class:`Reconnected`). Made by :func:`connect`; ``async
    with`` closes it."""

    __slots__ = ("_native",)

    def __init__(self, native: _native.NativeClient):
        self._native = native

    @property
    def session_id(self) -> int:
        return self._native.session_id

    @property
    def publisher_id(self) -> int:
        """What receivers see in :attr:`Message.publisher`."""
        return self._native.publisher_id

    @property
    def broker_id(self) -> str:
        return self._native.broker_id

    @property
    def server(self) -> str:
        return self._native.server

    @property
    def is_blocked(self) -> bool:
        """Whether the broker is outside the mesh's primary component."""
        return self._native.is_blocked

    def close_reason(self) -> Optional[MeshcastError]:
        """Why the session ended (as an exception), or ``None`` while open."""
        return self._native.close_reason()

    async def subscribe(self, pattern: str) -> Subscription:
        """Subscribes to a glob pattern (``orders/**``, ``*/created``).
        Returns once the broker installed it (mesh-wide, in every group the
        pattern reaches): every matching message ordered after that point
        is delivered to it."""
        return Subscription(await self._native.subscribe(pattern, False))

    async def tap(self, pattern: str) -> Subscription:
        """Reads matching messages without becoming a group member (no
        views; none of a member's guarantees across failures)."""
        return Subscription(await self._native.subscribe(pattern, True))

    def publisher(
        self, topic: str, ordering: OrderingName = "fifo", safe: bool = False
    ) -> Publisher:
        """A publisher for ``topic`` with its declared ordering and ``safe``
        flag. Raises :class:`InvalidTopic` at once for a bad topic."""
        return Publisher(self._native.publisher(topic, ordering, safe))

    async def publish(
        self,
        topic: str,
        payload: Payload,
        ordering: OrderingName = "fifo",
        safe: bool = False,
    ) -> None:
        """Publishes one message (a one-off :meth:`publisher`)."""
        await self.publisher(topic, ordering, safe).publish(payload)

    async def join(
        self, group: str, state: Optional[StateProvider] = None
    ) -> Group:
        """Joins a process group; returns once the member is in an installed
        view (:attr:`Group.view`).

        With ``state``, the group is replicated: the new member receives one
        checkpoint taken by an existing member at the join point
        (:attr:`Group.checkpoint`; ``None`` for the first member), and
        ``state`` is called to answer later joiners' requests, when the
        iteration of this group reaches them."""
        native, checkpoint = await self._native.join(group, state is not None)
        return Group(native, checkpoint, state)

    async def flush(self) -> None:
        """Waits until the broker processed everything sent before; raises
        the first publish it refused since the last flush, if any
        (:class:`Blocked`, :class:`Rejected`), or :class:`ConnectionLost`."""
        await self._native.flush()

    async def request(
        self,
        topic: str,
        payload: Payload,
        gather: Gather = "first",
        timeout: float = 1.0,
    ) -> List[Message]:
        """Publishes a request on ``topic`` and gathers the answers
        (:meth:`reply`): the first, ``n`` of them, or ``"all"`` that arrive
        before ``timeout`` seconds; raises :class:`NoResponders` when none
        does."""
        if gather == "first":
            count = 1
        elif gather == "all":
            count = 0
        elif isinstance(gather, int) and not isinstance(gather, bool) and gather > 0:
            count = gather
        else:
            raise ValueError(
                f"gather must be 'first', 'all' or a positive count, not {gather!r}"
            )
        return await self._native.request(topic, payload, count, timeout)

    async def reply(self, request: Message, payload: Payload) -> None:
        """Answers a request (does nothing for a message that asked none)."""
        if request.reply_to is not None:
            await self._native.reply(request.reply_to, payload)

    async def close(self) -> None:
        """Flushes what is queued, then closes the session (bounded)."""
        await self._native.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"<meshcast.Client session {self.session_id} on broker "
            f"{self.broker_id} at {self.server}>"
        )


class Connecting:
    """What :func:`connect` returns: await it for a :class:`Client`, or use
    it with ``async with`` (the client closes at the end)."""

    __slots__ = ("_make", "_client")

    def __init__(self, make: Callable[[], Awaitable[_native.NativeClient]]):
        self._make = make
        self._client: Optional[Client] = None

    async def _connect(self) -> Client:
        return Client(await self._make())

    def __await__(self) -> Generator[object, None, Client]:
        return self._connect().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._connect()
        return self._client

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._client is not None:
            await self._client.close()


def connect(
    servers: Union[str, Sequence[str]],
    *,
    ca: Optional[str] = None,
    name: Optional[str] = None,
    server_name: Optional[str] = None,
    connect_timeout: Optional[float] = None,
    reconnect: Union[float, bool, None] = None,
    subscription_buffer: Optional[int] = None,
    idle_timeout: Optional[float] = None,
    token: Optional[str] = None,
    cert: Optional[str] = None,
    key: Optional[str] = None,
) -> Connecting:
    """Connects to a broker: ``"127.0.0.1:4700"``, or several brokers of one
    mesh (a list, or one comma-separated string), tried in order.

    ``ca``: PEM file of the CA that signed the brokers' certificates.
    ``name``: shown in the brokers' logs. ``server_name``: the name the
    certificates must carry (default: the host name, or ``localhost`` for
    an IP address). ``connect_timeout``: seconds per attempt (default 5).
    ``reconnect``: seconds to keep trying the brokers after a lost
    connection, or ``False`` never (default: 60 with several brokers,
    never with one). ``subscription_buffer``: events buffered per
    subscription or group before the client stops reading (default 4096);
    one the application does not read in time ends with
    :class:`SlowSubscription`. ``idle_timeout``: seconds without hearing
    from the broker before the connection counts as lost (default 30; the
    broker's ``limits.session_timeout_ms`` applies too): how long a broker
    that vanished without closing takes to be noticed. ``token``:
    ``"USER:SECRET"`` for a broker with ``[auth]`` users (never shown in
    errors or reprs by the client); ``cert`` and ``key``: PEM files of a
    client certificate, for a broker with ``auth.client_ca``. A broker that
    does not accept them raises :class:`Unauthenticated`.

    Await the result (``client = await meshcast.connect(...)``) or use it
    with ``async with``. A failure raises :class:`ConnectError` (with its
    ``cause``), :class:`InvalidAddress` or :class:`TlsError`.
    """
    if isinstance(servers, str):
        joined = servers
    else:
        joined = ",".join(servers)
    if reconnect is False:
        again: Optional[float] = -1.0
    elif reconnect is True:
        raise ValueError("reconnect takes a number of seconds, or False")
    else:
        again = reconnect

    def make() -> Awaitable[_native.NativeClient]:
        return _native.connect(
            joined,
            ca=ca,
            name=name,
            server_name=server_name,
            connect_timeout=connect_timeout,
            reconnect=again,
            subscription_buffer=subscription_buffer,
            idle_timeout=idle_timeout,
            token=token,
            cert=cert,
            key=key,
        )

    return Connecting(make)
