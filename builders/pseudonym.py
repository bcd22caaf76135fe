"""Keyed pseudonyms for user ids: HMAC-SHA256 with a secret key that is never written to any output."""

from __future__ import annotations

import hashlib
import hmac
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
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        log.info("created a new pseudonym key file at %s (keep it to keep user pseudonyms stable)", path)
    return path.read_text().strip().encode("utf-8")


def pseudonymise(user_ids, key: bytes) -> list[str]:
    """Map raw user ids to stable 16-hex-digit pseudonyms prefixed with `u_`."""
    cache: dict[str, str] = {}
    out = []
    for uid in user_ids:
        p = cache.get(uid)
        if p is None:
            p = "u_" + hmac.new(key, uid.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
            cache[uid] = p
        out.append(p)
    return out
