"""Rate limits per key and per client address; X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from barcodeflow.redis import redis_client
from facade.ratelimit import client_ip, make_storage, parse_trusted
from tests.facade.conftest import DEAD_REDIS, Harness, MakeHarness


def _get(hx: Harness, key: str | None = None, **headers: str):
    return hx.client.get("/v1/batches/does-not-exist", headers=hx.h(key, **headers))


def _ok(status: int) -> bool:
    return status in (404, 503)  # 503: unknown id without Redis


def test_429_with_retry_after(make_harness: MakeHarness) -> None:
    hx = make_harness(settings={"rate_limit": "3/minute"})
    assert all(_ok(_get(hx).status_code) for _ in range(3))
    r = _get(hx)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limited"
    retry = r.headers["retry-after"]
    assert retry.isdigit()
    assert 1 <= int(retry) <= 60


def test_limit_is_per_key(make_harness: MakeHarness) -> None:
    """Same key from many addresses (behind a trusted proxy): the key's budget runs out."""
    hx = make_harness(settings={"rate_limit": "3/minute", "trusted_proxies": ("10.0.0.1",)}, client_ip="10.0.0.1")
    statuses = [_get(hx, **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(1, 5)]
    assert [_ok(s) for s in statuses[:3]] == [True, True, True]
    assert statuses[3] == 429
    # another key from a fresh address is fine
    assert _ok(_get(hx, hx.keys[1], **{"X-Forwarded-For": "203.0.113.99"}).status_code)


def test_limit_is_per_address(make_harness: MakeHarness) -> None:
    """Many keys from one address: the address's budget runs out."""
    keys = tuple(f"k{i}" for i in range(5))
    hx = make_harness(settings={"rate_limit": "3/minute"}, keys=keys)
    statuses = [_get(hx, k).status_code for k in keys]
    assert statuses[3] == 429 and statuses[4] == 429


def test_unauthenticated_requests_count_against_the_address(make_harness: MakeHarness) -> None:
    hx = make_harness(settings={"rate_limit": "3/minute"})
    assert [_get(hx, "wrong").status_code for _ in range(3)] == [401, 401, 401]
    assert _get(hx, "wrong").status_code == 429


def test_both_buckets_are_counted_and_the_address_is_named_first(make_harness: MakeHarness) -> None:
    """The address and the key are hit together: a request refused for its address still used one of
    its key's requests, and when both are over, the 429 names the address."""
    hx = make_harness(
        settings={"rate_limit": "2/minute", "trusted_proxies": ("10.0.0.1",)},
        client_ip="10.0.0.1",
        keys=("k0", "k1"),
    )
    busy = {"X-Forwarded-For": "203.0.113.7"}
    assert [_ok(_get(hx, "k1", **busy).status_code) for _ in range(2)] == [True, True]
    refused = _get(hx, "k0", **busy)  # the address is over its limit; k0 is charged all the same
    assert refused.status_code == 429
    assert "per client address" in refused.json()["error"]["message"]
    assert _ok(_get(hx, "k0", **{"X-Forwarded-For": "203.0.113.8"}).status_code)
    refused = _get(hx, "k0", **{"X-Forwarded-For": "203.0.113.9"})  # k0's third request within the minute
    assert refused.status_code == 429
    assert "per API key" in refused.json()["error"]["message"]


def test_spoofed_forwarded_for_from_loopback_does_not_escape_the_limit(make_harness: MakeHarness) -> None:
    """127.0.0.1 is not a configured proxy: its X-Forwarded-For is ignored."""
    keys = tuple(f"k{i}" for i in range(6))
    hx = make_harness(settings={"rate_limit": "3/minute"}, client_ip="127.0.0.1", keys=keys)
    statuses = [_get(hx, k, **{"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i, k in enumerate(keys)]
    assert statuses[3:] == [429, 429, 429]


def test_trusted_proxy_forwarded_for_is_honoured(make_harness: MakeHarness) -> None:
    keys = tuple(f"k{i}" for i in range(8))
    hx = make_harness(
        settings={"rate_limit": "2/minute", "trusted_proxies": ("10.9.0.0/16",)},
        client_ip="10.9.1.1",
        keys=keys,
    )
    # each real client (right-most untrusted hop) has its own budget; the spoofed left part is ignored
    for i in range(3):
        real = f"192.0.2.{i + 1}"
        statuses = [
            _get(hx, keys[i * 2 + j], **{"X-Forwarded-For": f"6.6.6.6, {real}, 10.9.2.2"}).status_code for j in range(2)
        ]
        assert all(_ok(s) for s in statuses), statuses
    assert _get(hx, keys[6], **{"X-Forwarded-For": "6.6.6.6, 192.0.2.1"}).status_code == 429


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("1.2.3.4", ["9.9.9.9"], [], "1.2.3.4"),
        ("127.0.0.1", ["9.9.9.9"], [], "127.0.0.1"),
        ("127.0.0.1", ["9.9.9.9"], ["10.0.0.0/8"], "127.0.0.1"),
        ("10.0.0.5", ["9.9.9.9"], ["10.0.0.0/8"], "9.9.9.9"),
        ("10.0.0.5", ["1.1.1.1, 9.9.9.9"], ["10.0.0.0/8"], "9.9.9.9"),
        ("10.0.0.5", ["1.1.1.1", "9.9.9.9, 10.0.0.7"], ["10.0.0.0/8"], "9.9.9.9"),
        ("10.0.0.5", ["10.0.0.8, 10.0.0.7"], ["10.0.0.0/8"], "10.0.0.8"),
        ("10.0.0.5", [], ["10.0.0.0/8"], "10.0.0.5"),
        ("10.0.0.5", ["garbage, 10.0.0.7"], ["10.0.0.0/8"], "10.0.0.7"),
        ("10.0.0.5", ["9.9.9.9:1234"], ["10.0.0.0/8"], "9.9.9.9"),
        ("10.0.0.5", ["[2001:db8::1]:443"], ["10.0.0.0/8"], "2001:db8::1"),
        ("::ffff:10.0.0.5", ["9.9.9.9"], ["10.0.0.5"], "9.9.9.9"),
        ("::1", ["9.9.9.9"], ["::1"], "9.9.9.9"),
        ("testclient", ["9.9.9.9"], ["10.0.0.0/8"], "testclient"),
        (None, [], [], "unknown"),
    ],
)
def test_client_ip(peer: str | None, xff: list[str], trusted: list[str], expected: str) -> None:
    assert client_ip(peer, xff, parse_trusted(trusted)) == expected


def test_parse_trusted() -> None:
    assert parse_trusted(["127.0.0.1", " 10.0.0.0/8 ", ""]) == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
    )
    from barcodeflow.settings import ConfigError

    with pytest.raises(ConfigError):
        parse_trusted(["not-an-ip"])


def test_bad_rate_limit_string_refuses_to_start(make_harness: MakeHarness) -> None:
    from barcodeflow.settings import ConfigError

    with pytest.raises(ConfigError, match="RATE_LIMIT"):
        make_harness(settings={"rate_limit": "lots"})


def _dead_storage() -> object:
    """A rate-limit storage on a Redis nobody listens on."""
    return make_storage(redis_client(DEAD_REDIS, timeout_s=1.0))


def test_storage_down_fails_open_by_default(make_harness: MakeHarness) -> None:
    hx = make_harness(settings={"rate_limit": "1/minute"}, ratelimit_storage=_dead_storage())
    assert all(_ok(_get(hx).status_code) for _ in range(3))
    assert "barcodeflow_facade_ratelimit_storage_errors_total" in hx.client.get("/metrics").text


def test_storage_down_fails_closed_when_configured(make_harness: MakeHarness) -> None:
    hx = make_harness(
        settings={"rate_limit": "1/minute", "rate_limit_fail_open": False},
        ratelimit_storage=_dead_storage(),
    )
    r = _get(hx)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "rate_limit_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    # health routes are not rate limited
    assert hx.client.get("/healthz").status_code == 200
