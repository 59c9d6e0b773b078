"""The moving windows behind the rate limits: ``RedisWindows`` (the real Redis, one script call per
request) and ``MemoryWindows`` answer the same."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from facade.ratelimit import MemoryWindows, RedisWindows, Windows
from tests.facade.conftest import redis_available, redis_url

MakeWindows = Callable[[], Windows]


@pytest.fixture(params=["memory", "redis"])
async def windows(request: pytest.FixtureRequest) -> AsyncIterator[Windows]:
    if request.param == "memory":
        yield MemoryWindows()
        return
    if not redis_available():
        pytest.skip("needs a Redis at REDIS_URL")
    client = aioredis.from_url(redis_url())
    yield RedisWindows(client)
    await client.aclose()


def _key() -> str:
    return f"bf:rl:test:{secrets.token_hex(6)}"


async def test_a_bucket_allows_its_limit_then_names_the_wait(windows: Windows) -> None:
    key = _key()
    assert [await windows.hit([(key, 3, 60)], 1000.0 + i) for i in range(3)] == [[None], [None], [None]]
    [wait] = await windows.hit([(key, 3, 60)], 1010.0)
    assert wait == pytest.approx(50.0)  # the oldest of the three (t=1000) leaves the window at t=1060


async def test_the_window_moves(windows: Windows) -> None:
    key = _key()
    for t in (1000.0, 1030.0):
        assert await windows.hit([(key, 2, 60)], t) == [None]
    assert (await windows.hit([(key, 2, 60)], 1059.0))[0] == pytest.approx(1.0)
    assert await windows.hit([(key, 2, 60)], 1060.5) == [None]  # t=1000 has left
    assert (await windows.hit([(key, 2, 60)], 1061.0))[0] == pytest.approx(29.0)  # t=1030 is the oldest now


async def test_a_refused_request_is_not_counted(windows: Windows) -> None:
    key = _key()
    await windows.hit([(key, 1, 10)], 1000.0)
    for t in (1001.0, 1005.0, 1009.0):
        assert (await windows.hit([(key, 1, 10)], t))[0] is not None
    assert await windows.hit([(key, 1, 10)], 1010.5) == [None]  # refusals did not extend the window


async def test_every_bucket_of_a_call_is_hit_whatever_the_others_answer(windows: Windows) -> None:
    full, fresh, other_limit = _key(), _key(), _key()
    await windows.hit([(full, 1, 60)], 1000.0)
    waits = await windows.hit([(full, 1, 60), (fresh, 2, 60), (other_limit, 5, 1)], 1001.0)
    assert waits[0] == pytest.approx(59.0)
    assert waits[1:] == [None, None]
    assert await windows.hit([(fresh, 2, 60)], 1002.0) == [None]  # its second request
    assert (await windows.hit([(fresh, 2, 60)], 1003.0))[0] == pytest.approx(58.0)  # the first counted at t=1001


async def test_redis_windows_expire_with_their_window() -> None:
    if not redis_available():
        pytest.skip("needs a Redis at REDIS_URL")
    client = aioredis.from_url(redis_url())
    try:
        key = _key()
        await RedisWindows(client).hit([(key, 5, 30)], 1000.0)
        assert 0 < await client.ttl(key) <= 30
        assert await client.llen(key) == 1
    finally:
        await client.aclose()
