"""The Kafka client settings every group member is built from, and the churn watch of its rebalance
listener (pure: no broker)."""

from __future__ import annotations

import pytest

from barcodeflow.kafka import (
    CHURN_LIMIT,
    CHURN_WINDOW_S,
    MembershipConflict,
    Rebalance,
    group_config,
    member_instance_id,
    membership_hint,
)
from barcodeflow.settings import Settings
from stream_app.faust_config import faust_config


def test_group_instance_id_comes_from_the_environment_and_reaches_both_consumers() -> None:
    s = Settings.from_env({"GROUP_INSTANCE_ID": "host1-sink"})
    assert s.group_instance_id == "host1-sink"
    assert Settings.from_env(s.as_env()).group_instance_id == "host1-sink"  # children rebuild it
    assert group_config(s)["group_instance_id"] == "host1-sink"
    assert faust_config(s, "worker")["consumer_group_instance_id"] == "host1-sink"


def test_without_an_id_membership_is_dynamic() -> None:
    s = Settings.from_env({"GROUP_INSTANCE_ID": ""})
    assert group_config(s)["group_instance_id"] is None
    assert faust_config(s, "worker")["consumer_group_instance_id"] is None
    assert membership_hint(s) == ""


def test_member_ids_are_stable_per_child_and_distinct_between_children() -> None:
    assert member_instance_id("h", "worker-1") == member_instance_id("h", "worker-1") == "h-worker-1"
    assert member_instance_id("h", "worker-1") != member_instance_id("h", "worker-2")
    assert member_instance_id("", "sink") == "sink"


def test_a_crash_of_a_static_member_names_its_id() -> None:
    assert "GROUP_INSTANCE_ID='h-sink'" in membership_hint(Settings(group_instance_id="h-sink"))


def listener_at(times: list[float], instance_id: str = "h-sink") -> Rebalance:
    clock = iter(times)

    async def nothing(_: object) -> None:
        return None

    listener = Rebalance(nothing, nothing, instance_id=instance_id, clock=lambda: next(clock))
    for _ in times:
        listener.note_assignment()
    return listener


def test_a_static_member_assigned_again_every_heartbeat_reports_a_conflict_naming_its_id() -> None:
    listener = listener_at([1.0 * n for n in range(CHURN_LIMIT)])
    with pytest.raises(MembershipConflict, match="'h-sink'"):
        listener.check()


@pytest.mark.parametrize(
    "times",
    [
        [1.0 * n for n in range(CHURN_LIMIT - 1)],  # one assignment short of the limit
        [CHURN_WINDOW_S / (CHURN_LIMIT - 1) * n * 1.01 for n in range(CHURN_LIMIT * 3)],  # steady, but slower
    ],
    ids=["below-limit", "spread-out"],
)
def test_ordinary_rebalances_are_no_conflict(times: list[float]) -> None:
    listener_at(times).check()


def test_a_dynamic_member_is_never_reported() -> None:
    listener_at([0.0] * (CHURN_LIMIT * 2), instance_id="").check()
