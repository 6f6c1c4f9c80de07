"""Exceptions raised by meshcast, one class per variant of the Rust
client's ``ClientError`` (the native layer raises them with the variant's
fields as attributes).

Catch :class:`MeshcastError` for all of them. Errors in what the caller
passed (a bad topic, pattern, address or payload size) are also
:class:`ValueError`; a lost or closed connection is also
:class:`ConnectionError`; waits that ran out are also :class:`TimeoutError`.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
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


class MeshcastError(Exception):
    """Base class of every meshcast error."""


class InvalidTopic(MeshcastError, ValueError):
    """The topic is not valid (checked before anything is sent)."""


class InvalidPattern(MeshcastError, ValueError):
    """The pattern is not valid (checked before anything is sent)."""


class PayloadTooLarge(MeshcastError, ValueError):
    """The payload is larger than the broker accepts."""

    size: int
    max: int


class TlsError(MeshcastError):
    """The CA file or TLS setup is unusable."""


class InvalidAddress(MeshcastError, ValueError):
    """A broker address is not ``IP:PORT`` or ``HOST:PORT``."""

    addr: str
    reason: str


class ConnectError(MeshcastError, ConnectionError):
    """No broker could be reached. ``cause`` is one of ``"resolve"``,
    ``"no_answer"``, ``"wrong_protocol"``, ``"server_name"``,
    ``"unknown_ca"``, ``"refused"``, ``"other"``."""

    addr: str
    cause: str
    detail: str


class ConnectionLost(MeshcastError, ConnectionError):
    """The connection was lost; what was in flight has an unknown outcome."""

    addr: str
    reason: str


class NoResponders(MeshcastError, TimeoutError):
    """A request was published but nobody answered before the timeout."""

    topic: str
    timeout: float


class TimedOut(MeshcastError, TimeoutError):
    """The broker did not answer an unsubscribe or leave in time."""

    what: str
    timeout: float


class HandshakeError(MeshcastError):
    """The handshake failed (version mismatch, refusal, ...)."""


class EncodeError(MeshcastError):
    """A message could not be encoded (it would exceed the frame limit)."""


class SlowSubscription(MeshcastError):
    """The subscription's buffer filled because it was not read fast
    enough; the subscription ended (the session stays open)."""

    pattern: str
    buffer: int


class Expelled(MeshcastError):
    """The mesh removed this member from a group (e.g. ``reason`` slow)."""

    group: str
    reason: str


class Blocked(MeshcastError):
    """The broker is cut off from the primary component and refused the
    publish or multicast: it was not sent."""

    reason: str


class Rejected(MeshcastError):
    """The broker refused a request. ``code`` is the broker's reject code
    in snake case (``"limit_reached"``, ``"outcome_unknown"``, ...)."""

    code: str
    reason: str


class Closed(MeshcastError, ConnectionError):
    """The session is closed. ``code`` is the close code in snake case
    when the broker gave one (``"normal"``, ``"slow_consumer"``, ...)."""

    code: Optional[str]
    reason: str


class Unauthenticated(MeshcastError, ConnectionError):
    """The broker refused the session: no credentials where it requires
    them, an unknown user or wrong token, or a client certificate it does
    not accept. Nothing happened on the broker."""

    addr: str
    reason: str


class PermissionDenied(MeshcastError):
    """The broker refused a request because the session's user may not do
    it; ``reason`` names the user, the action, the topic or group and the
    rule. The session stays open."""

    reason: str


class RateLimited(MeshcastError):
    """The broker refused a publish or multicast because the session
    publishes faster than it allows (``limits.publish_messages_per_s``,
    ``limits.publish_burst``, ``limits.publish_bytes_per_s``): it was not
    sent. Slow down and publish it again; the session stays open."""

    reason: str
