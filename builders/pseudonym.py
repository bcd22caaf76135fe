"""Keyed pseudonyms for user ids: HMAC-SHA256 with a secret key that is never written to any output."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

KEY_ENV = "INSTRUCTKIT_PSEUDONYM_KEY"


def key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "instructkit" / "pseudonym.key"


def load_key() -> bytes:
    """The key from $INSTRUCTKIT_PSEUDONYM_KEY, else from a private key file created on first use.

    Keeping the same key keeps pseudonyms (and so splits) stable across builds; the key itself is never logged.
    """
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode("utf-8")
    path = key_file()
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            # said once, where the user sees it: losing this file changes every pseudonym (and so the splits)
            log.warning("created a new pseudonym key file at %s: keep it to keep user pseudonyms stable", path)
        return path.read_text().strip().encode("utf-8")
    except OSError as exc:
        from builders.errors import InputError

        raise InputError(f"cannot create or read the pseudonym key ({exc.strerror or exc}): set ${KEY_ENV} to a secret, "
                         "or XDG_CONFIG_HOME to a writable folder", file=str(path)) from None


def _hmac_sha256_states(key: bytes):
    """HMAC-SHA256's inner and outer hashes after the key's block (RFC 2104): copying these per id is the same HMAC
    as `hmac.new(key, id, sha256)` at less than half the cost (the key is not hashed again for every id)."""
    block = 64  # SHA-256's block size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(key.translate(bytes(x ^ 0x36 for x in range(256))))
    outer = hashlib.sha256(key.translate(bytes(x ^ 0x5C for x in range(256))))
    return inner, outer


def pseudonymise(user_ids, key: bytes) -> list[str]:
    """Map raw user ids to stable 16-hex-digit pseudonyms prefixed with `u_`: the first 64 bits of
    HMAC-SHA256(key, user id as UTF-8), in hex."""
    inner, outer = _hmac_sha256_states(key)
    cache: dict[str, str] = {}
    out = []
    for uid in user_ids:
        p = cache.get(uid)
        if p is None:
            h = inner.copy()
            h.update(uid.encode("utf-8"))
            o = outer.copy()
            o.update(h.digest())
            p = cache[uid] = "u_" + o.hexdigest()[:16]
        out.append(p)
    return out
