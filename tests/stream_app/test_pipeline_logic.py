"""Planning, answers from the cache, task rendering and the cache itself, with fakes for Redis and the
pool (unit tests only)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from barcodeflow.cache import CachedImage, TwoLevelCache
from barcodeflow.local import run_batch
from render.batch import Plan, answer_from_cache, cached_result, failed_part, plan_batch, render_task
from render.core import Outcome
from render.pool import InlinePool
from schemas.errors import RenderFailed
from schemas.validate import parse_batch

GUARD_S = 10.0  # a broken test fails after this instead of hanging; never reached by a passing test


def plan(items: list[dict[str, Any]], **opts: Any) -> Plan:
    return plan_batch(parse_batch({"batch_id": "b", "barcodes": items, "options": opts}),
                      run="3:14", received_at_ms=1000, timeout_s=10)  # fmt: skip


def qr(*data: str) -> list[dict[str, Any]]:
    return [{"barcode_type": "qr", "data": d} for d in data]


class CountingPool(InlinePool):
    """Renders inline and records the specs of every call."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    async def run(self, specs: Sequence[dict[str, Any]], validate_only: bool = False) -> list[Outcome]:
        self.calls.append(list(specs))
        return await super().run(specs, validate_only)


def image(tag: str = "x") -> CachedImage:
    return CachedImage(image=f"<svg>{tag}</svg>".encode(), content_type="image/svg+xml", metadata={"tag": tag})


# -- plan_batch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_concurrent", [1, 3, 20])
def test_tasks_never_exceed_max_concurrent(max_concurrent: int) -> None:
    p = plan(qr(*map(str, range(50))), max_concurrent=max_concurrent)
    assert len(p.tasks) == max_concurrent
    indexes = sorted(it["index"] for t in p.tasks for it in t["items"])
    assert indexes == list(range(50))
    assert sorted(t["chunk"] for t in p.tasks) == sorted(str(i) for i in range(max_concurrent))


@pytest.mark.parametrize(("max_concurrent", "max_tasks", "n"), [(10, 4, 4), (3, 4, 3), (10, None, 10), (10, 20, 10)])
def test_the_renderer_bounds_the_number_of_tasks_too(max_concurrent: int, max_tasks: int | None, n: int) -> None:
    opts = {"max_concurrent": max_concurrent}
    req = parse_batch({"batch_id": "b", "barcodes": qr(*map(str, range(100))), "options": opts})
    p = plan_batch(req, run="3:14", received_at_ms=1000, timeout_s=10, max_tasks=max_tasks)
    assert len(p.tasks) == n
    assert sorted(it["index"] for t in p.tasks for it in t["items"]) == list(range(100))
    sizes = [len(t["items"]) for t in p.tasks]
    assert max(sizes) - min(sizes) <= 1  # even tasks: none waits behind a long one


def test_fewer_distinct_items_than_max_concurrent() -> None:
    p = plan(qr(*["same"] * 8, "other"))
    assert len(p.tasks) == 2
    assert sorted(len(t["items"]) for t in p.tasks) == [1, 8]


def test_open_record_and_tasks_carry_run_and_deadline() -> None:
    p = plan(qr("a", "b"), max_concurrent=2, include_metadata=False)
    assert p.open == {
        "kind": "open", "batch_id": "b", "run": "3:14", "total": 2, "ids": [None, None],
        "received_at": 1000, "deadline": 11_000, "replay": None, "results": [],
    }  # fmt: skip
    for t in p.tasks:
        assert (t["batch_id"], t["run"], t["deadline"]) == ("b", "3:14", 11_000)
        assert (t["validate_only"], t["no_cache"], t["include_metadata"]) == (False, False, False)
    assert p.keys() == {it["key"] for t in p.tasks for it in t["items"]} and len(p.keys()) == 2


def test_invalid_items_are_answered_in_the_open_record_and_not_rendered() -> None:
    p = plan([{"barcode_type": "qr", "data": ""}, {"barcode_type": "qr", "data": "ok", "id": "k"}])
    [failed] = p.open["results"]
    assert failed["index"] == 0 and failed["success"] is False and failed["error"]["code"] == "invalid_data"
    assert [(it["index"], it["id"]) for t in p.tasks for it in t["items"]] == [(1, "k")]


@pytest.mark.parametrize(
    ("opts", "use_cache"), [({}, True), ({"no_cache": True}, False), ({"validate_only": True}, False)]
)
def test_use_cache(opts: dict[str, Any], use_cache: bool) -> None:
    assert plan(qr("a"), **opts).use_cache is use_cache


# -- answer_from_cache ----------------------------------------------------------------------------


def test_answer_from_cache_moves_hits_into_the_open_record() -> None:
    p = plan(qr("a", "b", "a", "c"), max_concurrent=3)
    key = {it["index"]: it["key"] for t in p.tasks for it in t["items"]}
    answer_from_cache(p, {key[0]: image("a"), key[3]: image("c")}, include_metadata=True, lookup_ms=8.0)
    answered = sorted(p.open["results"], key=lambda r: r["index"])
    assert [(r["index"], r["cached"], r["svg"]) for r in answered] == [
        (0, True, "<svg>a</svg>"),
        (2, True, "<svg>a</svg>"),
        (3, True, "<svg>c</svg>"),
    ]
    assert answered[0]["metadata"] == {"tag": "a"}
    assert {r["generation_time_ms"] for r in answered} == {2.0}  # the lookup's time spread over 4 items
    assert [it["index"] for t in p.tasks for it in t["items"]] == [1]  # fully answered tasks are gone
    assert len(p.tasks) == 1 and p.tasks[0]["deadline"] == 11_000


def test_answer_from_cache_leaves_a_task_only_its_misses() -> None:
    p = plan(qr("a", "b", "a", "c"), max_concurrent=1)
    key = {it["index"]: it["key"] for t in p.tasks for it in t["items"]}
    answer_from_cache(p, {key[0]: image("a")}, include_metadata=True, lookup_ms=0.0)
    [task] = p.tasks
    assert sorted(it["index"] for it in task["items"]) == [1, 3]
    assert (task["chunk"], task["run"]) == ("0", "3:14")
    assert sorted(r["index"] for r in p.open["results"]) == [0, 2]
    assert p.keys() == {key[1], key[3]}


def test_answer_from_cache_keeps_the_invalid_items_and_may_answer_everything() -> None:
    p = plan([*qr("a"), {"barcode_type": "qr", "data": ""}])
    answer_from_cache(p, {k: image() for k in p.keys()}, include_metadata=False, lookup_ms=0.0)
    assert p.tasks == []
    assert sorted((r["index"], r["success"]) for r in p.open["results"]) == [(0, True), (1, False)]
    assert all("metadata" not in r for r in p.open["results"])


def test_answer_from_cache_without_hits_changes_nothing() -> None:
    p = plan(qr("a", "b"))
    before = [dict(t) for t in p.tasks]
    answer_from_cache(p, {}, include_metadata=True, lookup_ms=3.0)
    assert p.tasks == before and p.open["results"] == []


# -- render_task ----------------------------------------------------------------------------------


async def test_render_task_renders_without_reading_the_cache_and_stores_the_images() -> None:
    p = plan(qr("a"))
    cache = TwoLevelCache(None, max_size=10)
    [key] = p.keys()
    await cache.put_many({key: image("stale")})
    pool = CountingPool()
    part = await render_task(p.tasks[0], cache=cache, pool=pool)  # type: ignore[arg-type]
    assert len(pool.calls) == 1  # rendered although the cache holds the key: the intake looked it up
    assert part["kind"] == "part" and (part["run"], part["chunk"], part["deadline"]) == ("3:14", "0", 11_000)
    [r] = part["results"]
    assert r["success"] and not r["cached"] and r["svg"].startswith("<")
    assert r["svg"] != "<svg>stale</svg>"
    assert cache.lru.get(key) is not None and cache.lru.get(key) != image("stale")  # fresh image stored


async def test_render_task_renders_duplicates_once() -> None:
    p = plan(qr("a", "a", "a"))
    pool = CountingPool()
    part = await render_task(p.tasks[0], cache=TwoLevelCache(None, max_size=10), pool=pool)  # type: ignore[arg-type]
    assert [len(c) for c in pool.calls] == [1]
    rs = sorted(part["results"], key=lambda r: r["index"])
    assert [r["cached"] for r in rs] == [False, True, True]
    assert [r["generation_time_ms"] == 0.0 for r in rs] == [False, True, True]
    assert len({r["svg"] for r in rs}) == 1


async def test_render_task_failures_are_per_item_and_not_cached() -> None:
    p = plan([{"barcode_type": "ean8", "data": "9638507"}, {"barcode_type": "qr", "data": "fine"}], max_concurrent=1)
    task = p.tasks[0]
    task["items"][0]["spec"] = {**task["items"][0]["spec"], "data": "not digits"}  # fails at render time
    cache = TwoLevelCache(None, max_size=10)
    part = await render_task(task, cache=cache, pool=InlinePool())  # type: ignore[arg-type]
    by_index = {r["index"]: r for r in part["results"]}
    assert by_index[0]["success"] is False and "code" in by_index[0]["error"]
    assert by_index[1]["success"] is True
    assert len(cache.lru) == 1


async def test_validate_only_returns_metadata_and_caches_nothing() -> None:
    p = plan(qr("hello"), validate_only=True)
    cache = TwoLevelCache(None, max_size=10)
    part = await render_task(p.tasks[0], cache=cache, pool=InlinePool())  # type: ignore[arg-type]
    [r] = part["results"]
    assert r["success"] and "svg" not in r and "png" not in r
    assert r["metadata"]["version"] == 1
    assert len(cache.lru) == 0


def test_failed_part_fails_every_item_of_the_task() -> None:
    p = plan(qr("a", "b"), max_concurrent=1)
    part = failed_part(p.tasks[0], RenderFailed("the render agent did not answer in time"))
    assert part["kind"] == "part" and part["chunk"] == "0" and part["deadline"] == 11_000
    assert sorted(r["index"] for r in part["results"]) == [0, 1]
    assert {r["error"]["code"] for r in part["results"]} == {"render_failed"}


# -- cached_result (the facade's shortcut) ---------------------------------------------------------


async def test_cached_result_only_when_every_item_is_cached() -> None:
    cache = TwoLevelCache(None, max_size=10)
    req = parse_batch({"batch_id": "b", "barcodes": [*qr("a", "b"), {"barcode_type": "qr", "data": ""}]})
    p = plan_batch(req, run="x", received_at_ms=0, timeout_s=10)
    keys = sorted(p.keys())
    await cache.put_many({keys[0]: image()})
    assert await cached_result(req, plan_batch(req, run="x", received_at_ms=0, timeout_s=10), cache) is None
    await cache.put_many({keys[1]: image()})
    result = await cached_result(req, plan_batch(req, run="x", received_at_ms=0, timeout_s=10), cache)
    assert result is not None
    assert [(r["index"], r["cached"], r["success"]) for r in result["results"]] == [
        (0, True, True), (1, True, True), (2, False, False),
    ]  # fmt: skip
    no_cache = parse_batch({"batch_id": "b", "barcodes": qr("a", "b"), "options": {"no_cache": True}})
    assert await cached_result(no_cache, plan_batch(no_cache, run="x", received_at_ms=0, timeout_s=10), cache) is None


# -- the cache ------------------------------------------------------------------------------------


class FakeRedis:
    """Answers, hangs (``hang``) or raises (``fail``): stands in for a healthy, stuck or dead Redis."""

    def __init__(self, *, hang: bool = False, fail: bool = False) -> None:
        self.hang, self.fail, self.calls = hang, fail, 0
        self.data: dict[str, bytes] = {}

    async def _answer(self) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.fail:
            raise RedisConnectionError("connection refused")

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        await self._answer()
        return [self.data.get(k) for k in keys]

    def pipeline(self, transaction: bool = False) -> Any:
        outer = self
        ops: list[tuple[str, bytes]] = []

        class Pipe:
            def set(self, key: str, val: bytes, ex: int) -> None:
                ops.append((key, val))

            async def execute(self) -> None:
                await outer._answer()
                outer.data.update(ops)

        return Pipe()


async def test_a_stuck_redis_is_given_up_after_the_timeout_then_skipped() -> None:
    cache = TwoLevelCache(FakeRedis(hang=True), max_size=10, timeout_ms=50)  # type: ignore[arg-type]
    assert await asyncio.wait_for(cache.get_many(["a", "b"]), GUARD_S) == {}
    assert cache.stats.redis_errors == 1 and cache.stats.misses == 2
    await cache.get_many(["c"])  # within the back-off, Redis is not even asked
    assert cache.stats.redis_skipped == 1 and cache.redis.calls == 1  # type: ignore[union-attr]


async def test_a_dead_redis_still_renders_and_the_memory_level_serves() -> None:
    cache = TwoLevelCache(FakeRedis(fail=True), max_size=10, timeout_ms=50, backoff_s=0)  # type: ignore[arg-type]
    p = plan([{"barcode_type": "ean8", "data": "9638507"}])
    part = await render_task(p.tasks[0], cache=cache, pool=InlinePool())  # type: ignore[arg-type]
    assert part["results"][0]["success"]
    assert cache.stats.redis_errors == 1  # the SET
    assert set(await cache.get_many(p.keys())) == p.keys()
    assert cache.stats.memory_hits == 1


async def test_redis_level_is_shared_between_workers() -> None:
    redis = FakeRedis()
    a = TwoLevelCache(redis, max_size=10)  # type: ignore[arg-type]
    b = TwoLevelCache(redis, max_size=10)  # type: ignore[arg-type]
    p = plan(qr("shared"))
    await render_task(p.tasks[0], cache=a, pool=InlinePool())  # type: ignore[arg-type]
    hits = await b.get_many(p.keys())
    assert set(hits) == p.keys() and b.stats.redis_hits == 1
    assert hits == {k: a.lru.get(k) for k in p.keys()}


async def test_a_corrupt_redis_entry_is_a_miss() -> None:
    redis = FakeRedis()
    redis.data["bf:img:k"] = b"\xff not a cached image"
    cache = TwoLevelCache(redis, max_size=10)  # type: ignore[arg-type]
    assert await cache.get_many(["k"]) == {} and cache.stats.misses == 1


def test_cached_image_round_trip() -> None:
    img = CachedImage(image=b"\x89PNG\n\x00", content_type="image/png", metadata={"v": 1, "s": "a\nb"})
    assert CachedImage.decode(img.encode()) == img


# -- the embedded path ----------------------------------------------------------------------------


async def test_run_batch_answers_from_the_cache_the_second_time() -> None:
    cache = TwoLevelCache(None, max_size=10)
    req = parse_batch({"barcodes": [*qr("x", "y"), {"barcode_type": "qr", "data": ""}]})
    first = await run_batch(req, cache=cache)
    again = await run_batch(req, cache=cache)
    assert (first["summary"]["cached"], again["summary"]["cached"]) == (0, 2)
    assert [r["index"] for r in again["results"]] == [0, 1, 2]
    assert [r.get("svg") for r in again["results"]] == [r.get("svg") for r in first["results"]]


async def test_no_cache_renders_afresh_but_still_stores() -> None:
    cache = TwoLevelCache(None, max_size=10)
    req = parse_batch({"barcodes": qr("x"), "options": {"no_cache": True}})
    await run_batch(req, cache=cache)
    again = await run_batch(req, cache=cache)
    assert again["summary"]["cached"] == 0 and len(cache.lru) == 1
