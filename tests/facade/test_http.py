"""facade.http: a response leaves in one write of the transport (uvicorn writes head and body apart)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from facade.http import JOIN_MAX_BYTES, CoalescingHttpToolsProtocol, CoalescingTransport


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def small(request: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


async def streamed(request: Request) -> StreamingResponse:
    async def chunks() -> Any:
        yield b"first"
        await asyncio.sleep(0.01)
        yield b"second"

    return StreamingResponse(chunks(), media_type="text/plain")


APP = Starlette(routes=[Route("/small", small), Route("/streamed", streamed)])


async def _serve(protocol_class: type[HttpToolsProtocol], path: str) -> list[bytes]:
    config = Config(app=APP, http=protocol_class, lifespan="off", log_level="warning", access_log=False)
    protocol = protocol_class(config, ServerState(), {})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    for _ in range(100):
        await asyncio.sleep(0.005)
        if transport.writes and transport.writes[-1].endswith((b"0\r\n\r\n", b'{"ok":true}')):
            break
    await asyncio.sleep(0.01)
    protocol.connection_lost(None)
    return transport.writes


async def test_uvicorn_alone_writes_head_and_body_apart() -> None:
    """The premise: without the wrapper, a small response is two writes (so two segments)."""
    writes = await _serve(HttpToolsProtocol, "/small")
    assert len(writes) == 2
    assert writes[0].startswith(b"HTTP/1.1 200 OK") and writes[1] == b'{"ok":true}'


async def test_a_response_is_one_write() -> None:
    writes = await _serve(CoalescingHttpToolsProtocol, "/small")
    assert len(writes) == 1
    head, _, body = writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 11" in head.lower()
    assert body == b'{"ok":true}'


async def test_a_streamed_response_still_leaves_chunk_by_chunk() -> None:
    writes = await _serve(CoalescingHttpToolsProtocol, "/streamed")
    joined = b"".join(writes)
    assert b"first" in joined and b"second" in joined
    assert not any(b"first" in w and b"second" in w for w in writes)  # not held back until the end


async def test_close_sends_what_is_pending_first() -> None:
    inner = RecordingTransport()
    t = CoalescingTransport(inner, asyncio.get_running_loop())
    t.write(b"a")
    t.write(bytearray(b"b"))
    t.write(b"")
    t.close()
    assert inner.writes == [b"ab"] and inner.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert inner.writes == [b"ab"]


async def test_big_writes_are_not_copied_into_one() -> None:
    inner = RecordingTransport()
    t = CoalescingTransport(inner, asyncio.get_running_loop())
    big = b"x" * (JOIN_MAX_BYTES + 1)
    t.write(b"head")
    t.write(big)
    await asyncio.sleep(0)
    assert inner.writes == [b"head", big]
    assert t.get_extra_info("peername") == ("127.0.0.1", 50000)  # everything else is the real transport's
