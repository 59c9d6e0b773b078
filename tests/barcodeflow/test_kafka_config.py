"""The Kafka client settings every group member is built from (pure: no broker)."""

from __future__ import annotations

from barcodeflow.kafka import group_config, member_instance_id, membership_hint
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
