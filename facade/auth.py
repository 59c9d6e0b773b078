"""API keys (``X-API-Key``): loading, constant-time checking and the stable key id used for ownership.

Keys come from ``settings.api_keys`` and, one per line, from ``settings.api_keys_file`` (blank lines and
lines starting with ``#`` are ignored). Only SHA-256 digests are kept in memory; a presented key is
hashed and compared with ``hmac.compare_digest`` against *every* configured digest (no early exit), so
timing tells neither which key matched nor how long the keys are.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

from fastapi.security import APIKeyHeader

from barcodeflow.settings import ConfigError, Settings

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
ANONYMOUS = "anonymous"

# Documents the security scheme in OpenAPI; auto_error=False so the facade answers 401 itself.
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="An API key of this deployment.")


def key_id(key: str) -> str:
    """Stable, non-reversible id of a key: what ownership records (``bf:owner:*``) and limits use."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_api_keys(settings: Settings) -> tuple[str, ...]:
    keys = [k.strip() for k in settings.api_keys if k.strip()]
    if settings.api_keys_file:
        path = Path(settings.api_keys_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read API_KEYS_FILE {path}: {exc.strerror or exc}") from None
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                keys.append(line)
    return tuple(dict.fromkeys(keys))


class Authenticator:
    def __init__(self, keys: tuple[str, ...], *, allow_no_auth: bool = False) -> None:
        if not keys and not allow_no_auth:
            raise ConfigError(
                "no API keys configured (API_KEYS / API_KEYS_FILE); refusing to start an open facade. "
                "Pass --insecure-no-auth or set FACADE_ALLOW_NO_AUTH=1 to run without authentication."
            )
        self.enabled = bool(keys)
        self._digests = tuple(hashlib.sha256(k.encode("utf-8")).digest() for k in keys)
        if not self.enabled:
            log.warning("facade running WITHOUT authentication (insecure no-auth mode)")

    def identify(self, presented: str | None) -> str | None:
        """The key id of a valid key, ``ANONYMOUS`` when auth is disabled, else ``None``."""
        if not self.enabled:
            return ANONYMOUS
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        return digest.hex() if matched else None
