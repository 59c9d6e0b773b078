"""The HTTP server's connection protocol: uvicorn's httptools protocol, each response in one ``send()``.

uvicorn writes a response's status line and headers when the app sends ``http.response.start`` and the
body when it sends ``http.response.body``: two ``send()`` calls, two TCP segments, and a client that wakes
up for the head and again for the body. Here a connection's writes are held until the end of the event
loop step that made them, then leave together, so a response that the app sends in one step (every
``Response`` of ours) is one segment. A streamed response still leaves chunk by chunk, one loop step apart.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

JOIN_MAX_BYTES = 256 * 1024
"""Writes are joined up to this size; bigger ones go out one by one (a copy of a big body saves nothing)."""


class CoalescingTransport:
    """A transport whose writes within one event loop step are sent as one ``write`` of the real one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data if isinstance(data, bytes) else bytes(data))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if len(pending) == 1 or sum(map(len, pending)) > JOIN_MAX_BYTES:
            for data in pending:
                self._transport.write(data)
        elif pending:
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` writing through a ``CoalescingTransport`` (pass as ``uvicorn.run(http=...)``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped = CoalescingTransport(transport, self.loop)
        super().connection_made(wrapped)  # type: ignore[arg-type]
