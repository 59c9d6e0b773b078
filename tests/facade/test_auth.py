"""API keys: 401 on every /v1 route without a valid key; open operational routes; key sources."""

from __future__ import annotations

import hashlib

import pytest

from barcodeflow.settings import ConfigError, Settings
from facade.auth import ANONYMOUS, Authenticator, load_api_keys
from tests.facade.conftest import Harness, MakeHarness, batch

V1_ROUTES = [
    ("POST", "/v1/batches", batch(1)),
    ("POST", "/v1/batches?wait=false", batch(1)),
    ("GET", "/v1/batches/00000000-0000-0000-0000-000000000000", None),
    ("GET", "/v1/barcodes/qr.svg?data=hello", None),
    ("GET", "/v1/barcodes/ean13.png?data=400638133393", None),
]


def _bad_keys(key: str) -> list[dict[str, str]]:
    return [
        {},  # missing
        {"X-API-Key": ""},
        {"X-API-Key": "wrong"},
        {"X-API-Key": key.upper()},  # other case
        {"X-API-Key": key + " x"},
        {"X-API-Key": key[:-1]},  # prefix
        {"Authorization": f"Bearer {key}"},  # wrong header
    ]


@pytest.mark.parametrize(("method", "url", "body"), V1_ROUTES)
def test_every_v1_route_needs_a_valid_key(harness: Harness, method: str, url: str, body: object) -> None:
    for headers in _bad_keys(harness.key):
        r = harness.client.request(method, url, json=body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"]["code"] == "unauthorized"
        assert "X-API-Key" in r.headers["www-authenticate"]
    assert harness.publisher.sent == []


def test_401_comes_before_validation(harness: Harness) -> None:
    r = harness.client.post("/v1/batches?timeout=99", content=b"{", headers={"X-API-Key": "nope"})
    assert r.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"])
def test_operational_routes_are_open(harness: Harness, path: str) -> None:
    r = harness.client.get(path)
    assert r.status_code in (200, 503), r.text  # readyz may be 503 without Redis
    assert r.status_code != 401


def test_every_configured_key_works(harness: Harness) -> None:
    for key in harness.keys:
        assert harness.client.post("/v1/batches", json=batch(1), headers={"X-API-Key": key}).status_code == 200


def test_no_keys_refuses_to_start() -> None:
    from facade.app import create_app

    with pytest.raises(ConfigError, match="insecure-no-auth"):
        create_app(Settings.from_env({}))


def test_no_keys_env_flag_allows_an_open_facade(make_harness: MakeHarness) -> None:
    assert Settings.from_env({"FACADE_ALLOW_NO_AUTH": "1"}).facade_allow_no_auth
    hx = make_harness(keys=(), settings={"facade_allow_no_auth": True})
    r = hx.client.post("/v1/batches", json=batch(1))
    assert r.status_code == 200
    bid = r.json()["batch_id"]
    assert hx.client.get(f"/v1/batches/{bid}").status_code == 200


def test_keys_file(tmp_path) -> None:
    f = tmp_path / "keys"
    f.write_text("# comment\n\n  file-key-1  \nfile-key-2\nenv-key\n")
    keys = load_api_keys(Settings(api_keys=("env-key",), api_keys_file=str(f)))
    assert keys == ("env-key", "file-key-1", "file-key-2")
    with pytest.raises(ConfigError, match="API_KEYS_FILE"):
        load_api_keys(Settings(api_keys_file=str(tmp_path / "missing")))


def test_keys_file_is_used_by_the_app(make_harness: MakeHarness, tmp_path) -> None:
    f = tmp_path / "keys"
    f.write_text("from-file\n")
    hx = make_harness(keys=("from-env",), settings={"api_keys_file": str(f)})
    assert hx.client.post("/v1/batches", json=batch(1), headers={"X-API-Key": "from-file"}).status_code == 200
    assert hx.client.post("/v1/batches", json=batch(1), headers={"X-API-Key": "from-env"}).status_code == 200


def test_authenticator_identifies_keys_by_their_digest() -> None:
    auth = Authenticator(("alpha", "beta"))
    assert auth.identify("alpha") == hashlib.sha256(b"alpha").hexdigest()
    assert auth.identify("beta") == hashlib.sha256(b"beta").hexdigest()
    for bad in (None, "", "ALPHA", "alph", "alphaa", "\udcff"):
        assert auth.identify(bad) is None
    assert Authenticator((), allow_no_auth=True).identify(None) == ANONYMOUS


def test_authenticator_compares_against_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import facade.auth as auth_mod

    calls: list[int] = []
    real = auth_mod.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", counting)
    auth = Authenticator(("k1", "k2", "k3"))
    auth.identify("k1")  # matches the first key, still compares with all three
    assert len(calls) == 3
