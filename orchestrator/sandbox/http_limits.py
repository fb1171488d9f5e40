"""What a client of the tool API server can make it hold: bodies bounded as they stream in,
requests that must arrive within a deadline.

Code the agent runs shares the sandbox with the server, so a client may be hostile: a
chunked body declares no length, and a request sent a byte at a time would otherwise keep
its connection (and the server's memory) for as long as the client likes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

_HANG_UP = {"Connection": "close"}
"""On a refused body: uvicorn closes the connection after the answer, reading no more of it."""


class BodyLimit:
    """ASGI middleware: a request body past ``max_bytes``, declared or not, is refused (413) as
    soon as it is, and one that does not arrive whole within ``timeout_s`` is refused (408)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        complete = False

        async def bounded() -> Message:
            nonlocal received, complete
            if complete:  # listening for a disconnect while a response is made: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise HTTPException(
                    408, f"request body not received within {self.timeout_s:g} s", _HANG_UP
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"request body over the {self.max_bytes}-byte limit", _HANG_UP)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, bounded, send)


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a connection closed when a request's head has not
    arrived within ``head_timeout_s`` of its opening or of the last response (uvicorn itself
    waits for ever on a connection that never completes its headers)."""

    head_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._too_slow)

    def _too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # the head is in: the body's own deadline is BodyLimit's

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may already start a pipelined request
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def head_deadline_protocol(head_timeout_s: float) -> type[HeadDeadlineProtocol]:
    """The protocol class to hand uvicorn's ``Config(http=...)``, with its deadline set."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout_s": head_timeout_s})
