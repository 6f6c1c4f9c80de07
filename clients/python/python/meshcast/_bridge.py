"""Hands a native operation's outcome to its asyncio future (called by the
native layer through ``loop.call_soon_threadsafe``)."""

from __future__ import annotations

import asyncio
from typing import Any, Optional


def resolve(fut: "asyncio.Future[Any]", exc: Optional[BaseException], value: Any) -> None:
    if fut.done():  # cancelled meanwhile
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)
