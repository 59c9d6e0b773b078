"""Property-based API tests from /openapi.json (schemathesis, in-process over ASGI).

The unit variant runs against fake Kafka clients (answering every batch); the integration variant
(``test_integration.py``) runs the same checks against the real pipeline. Either way: no 5xx, every
status code, content type, header and body as documented.
"""

from __future__ import annotations

import secrets

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from barcodeflow.settings import Settings
from facade.app import create_app
from facade.ratelimit import memory_storage
from tests.facade.conftest import DEAD_REDIS, redis_available, redis_url
from tests.facade.fakes import FakeListener, FakePublisher

API_KEY = "schemathesis-" + secrets.token_hex(8)


def _app():
    use_redis = redis_available()
    s = Settings(
        redis_url=redis_url() if use_redis else DEAD_REDIS,
        api_keys=(API_KEY,),
        rate_limit="100000/minute",
        facade_render_executor="thread",
        facade_ratelimit_prefix=f"bf:rl:st:{secrets.token_hex(6)}",
    )
    lis = FakeListener()
    storage = None
    if not use_redis:
        storage = memory_storage()

    async def ok() -> None:
        return None

    return create_app(s, publisher=FakePublisher(lis), listener=lis, kafka_probe=ok, ratelimit_storage=storage)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())

# Every default check except the two that assume the schema is the *whole* validation:
# * positive_data_acceptance: a schema-valid request can still be semantically invalid (duplicate item
#   ids, ``data`` that is not a valid EAN-13, a foreground equal to the background): 422 by design;
# * negative_data_rejection: the documented body is the *strict* BatchRequest, while the server accepts
#   the lenient one on purpose (a bad item fails alone, inside a 200 BatchResult) and pydantic's lax
#   mode coerces e.g. ``"no_cache": 0``.
EXCLUDED = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.negative_data_rejection]


@pytest.mark.skipif(not redis_available(), reason="needs Redis: without it GET /v1/batches/{id} and /readyz are 503")
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"X-API-Key": API_KEY}, excluded_checks=EXCLUDED)
