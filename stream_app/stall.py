"""A watchdog for source partitions that stopped moving, and its Faust timer.

After a consumer-group rebalance Faust can drop records it has already fetched: they never reach the
agent, the consumer's position is past them, and since Faust commits only up to the first offset not
acknowledged, the committed offset of that partition stops for good (RELIABILITY.md, D6). Nothing is
lost on the broker: seeking back to the committed offset delivers the records again. The worker and
the sink both process records idempotently (a part already aggregated, a task already rendered, a
run already opened are recognised), so a re-read costs time, never correctness.

``StallWatch`` is the pure decision; ``watch_for_stalls`` installs it as a Faust timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class StallWatch(Generic[K]):
    """Partitions whose records are waiting (end offset beyond the committed offset) while neither the
    committed offset nor the record in processing has changed for ``after_s`` seconds, or for
    ``idle_after_s`` when the whole app was idle meanwhile (nothing in processing, no commit anywhere:
    the state a restarted consumer that stopped delivering is in; a busy app always has a record in
    processing or a commit moving).

    A record taken for processing but never acknowledged also stops the commit (Faust commits up to the
    first unacknowledged offset); it counts as stuck too once it stayed the same for ``after_s``. A
    record legitimately processed that long (a sink retrying a write to an unavailable broker) is read
    and processed again: a duplicate, never a loss.
    """

    def __init__(self, after_s: float, idle_after_s: float | None = None) -> None:
        self.after_s = after_s
        self.idle_after_s = min(after_s, idle_after_s if idle_after_s is not None else after_s)
        self._since: dict[K, tuple[tuple[int | None, int | None], float]] = {}
        self._active_at: float | None = None
        self.stalls = 0

    def reset(self) -> None:
        self._since.clear()
        self._active_at = None

    def check(self, now: float, positions: Mapping[K, tuple[int | None, int | None, int | None]]) -> list[K]:
        """``positions``: partition → (committed offset, end offset, lowest offset in processing or None)."""
        active = self._active_at is None
        for tp, (committed, _, in_processing) in positions.items():
            seen = self._since.get(tp)
            if in_processing is not None or (seen is not None and seen[0][0] != committed):
                active = True
        if active:
            self._active_at = now
        idle_s = now - (self._active_at if self._active_at is not None else now)
        stuck: list[K] = []
        for tp, (committed, end, in_processing) in positions.items():
            waiting = end is not None and end > (committed or 0)
            state = (committed, in_processing)
            seen = self._since.get(tp)
            if not waiting or seen is None or seen[0] != state:
                self._since[tp] = (state, now)
                continue
            unchanged_s = now - seen[1]
            if unchanged_s >= self.after_s or min(unchanged_s, idle_s) >= self.idle_after_s:
                stuck.append(tp)
                self._since[tp] = (state, now)  # give the re-read as long again
        if stuck:
            self._active_at = now
        for tp in [tp for tp in self._since if tp not in positions]:
            del self._since[tp]
        self.stalls += len(stuck)
        return stuck


async def seek_back(consumer: Any, offsets: Mapping[Any, int]) -> None:
    """Make Faust's ``consumer`` deliver ``offsets`` (partition → offset) again.

    Faust's fetcher drops records below its read offset, and the record it is handing over at the moment
    of a seek moves that offset up again: a plain seek from the agents' loop re-delivered nothing. So the
    flow is paused around a ``seek_wait`` on the consumer's own thread, and the read offsets are set last.
    """
    consumer.stop_flow()
    try:
        await asyncio.sleep(0.05)  # let the record being handed over pass
        await consumer.seek_wait(dict(offsets))
        consumer._read_offset.update(offsets)  # noqa: SLF001 - seek_wait leaves it unset for offset 0
    finally:
        consumer.resume_flow()


def watch_for_stalls(
    app: Any,
    topics: Iterable[str],
    *,
    after_s: float,
    idle_after_s: float = 5.0,
    interval_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> StallWatch[Any]:
    """Install a timer on the Faust ``app`` that re-reads its stalled partitions of ``topics`` from their
    committed offsets. Returns the watch (its ``stalls`` counts the re-reads)."""
    watch: StallWatch[Any] = StallWatch(after_s, idle_after_s)
    names = set(topics)

    async def stall_watch() -> None:
        try:
            await look(app.consumer)
        except Exception as exc:  # noqa: BLE001 - an exception escaping a Faust timer crashes the app
            log.warning("stall watch: %r (broker unavailable?); trying again", exc)
            watch.reset()

    async def look(consumer: Any) -> None:
        if app.rebalancing or app.in_recovery or not consumer.flow_active:
            watch.reset()
            return
        tps = [tp for tp in consumer.assignment() if tp.topic in names]
        if not tps:
            return
        ends = await consumer.highwaters(*tps)
        committed = consumer._committed_offset  # noqa: SLF001 - Faust has no public accessor
        in_processing: dict[Any, int] = {}
        for m in consumer.unacked:  # a record redelivered by a re-read leaves its stale copy here
            if m.offset >= (committed.get(m.tp) or 0) and m.offset < in_processing.get(m.tp, m.offset + 1):
                in_processing[m.tp] = m.offset
        positions = {tp: (committed.get(tp), ends.get(tp), in_processing.get(tp)) for tp in tps}
        stuck = watch.check(clock(), positions)
        if stuck:
            log.warning(
                "partitions stalled with records waiting: %s; seeking back to the committed offsets",
                ", ".join(
                    f"{tp.topic}[{tp.partition}] committed {positions[tp][0]}, end {positions[tp][1]}, "
                    f"in processing {positions[tp][2]}"
                    for tp in stuck
                ),  # fmt: skip
            )
            consumer.resume_partitions(stuck)  # in case Faust left them paused (a no-op otherwise)
            never = [tp for tp in stuck if committed.get(tp) is None]
            earliest = await consumer.earliest_offsets(*never) if never else {}
            offsets = {tp: committed[tp] if committed.get(tp) is not None else earliest.get(tp, 0) for tp in stuck}
            await seek_back(consumer, offsets)

    app.timer(interval_s, name=f"{app.conf.id}.stall_watch")(stall_watch)
    return watch
