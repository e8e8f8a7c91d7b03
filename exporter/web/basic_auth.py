"""HTTP basic auth against bcrypt hashes, bounded so a flood of wrong passwords costs the flood.

bcrypt is slow on purpose (50-100 ms per check at cost 10), so it runs in one worker thread
(exporter-toolkit also runs one at a time), never on the event loop, leaving the other cores to
the scrapes; at most `queue_limit` distinct credentials wait for it, and any more get 503. Verdicts are cached, good ones apart from bad ones, so a scraper whose
credentials were checked once is answered from memory however many wrong passwords arrive.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import hmac
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import bcrypt

# bcrypt hashes only the first 72 bytes of a password; Go's CompareHashAndPassword (what
# exporter-toolkit calls) ignores the rest, while pyca/bcrypt >= 5 raises ValueError instead.
BCRYPT_MAX_PASSWORD = 72
_WORKERS = 1  # bcrypt threads: a flood of wrong passwords must not take the event loop's core
_QUEUE_LIMIT = 16  # distinct credentials waiting for (or in) bcrypt (at most ~1.6 s); then 503
_GOOD_CACHE_SIZE = 64  # verified credentials: only a real password gets in, so a flood cannot evict
_BAD_CACHE_SIZE = 1024
_log = logging.getLogger("exporter.web.basic_auth")


_POOL: list[ThreadPoolExecutor] = []


def _pool() -> ThreadPoolExecutor:
    """The process's bcrypt threads, shared by every BasicAuth (a reload makes a new one)."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(_WORKERS, thread_name_prefix="bcrypt"))
    return _POOL[0]


def check_password(password: bytes, hashed: bytes) -> bool:
    """bcrypt as exporter-toolkit applies it: bytes past the 72nd are not part of the hash."""
    return bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed)


class Verdict(enum.Enum):
    """The outcome of one `Authorization` header."""

    OK = "ok"
    DENIED = "denied"
    BUSY = "busy"  # not checked: too many credentials already wait for bcrypt


@dataclass(slots=True)
class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes in a small worker pool, with caches.

    Verdicts are cached per (user, keyed hash of the attempted password), so a storm of scrapes
    costs one bcrypt per distinct credential; the caches never hold a password. Good verdicts
    have their own cache, so a flood of distinct wrong passwords cannot evict the scraper's,
    and at most `queue_limit` distinct credentials wait for bcrypt: the rest are told to come
    back (503) at once instead of queueing behind the flood.
    """

    users: Mapping[str, bytes]
    check: Callable[[bytes, bytes], bool] = check_password
    queue_limit: int = _QUEUE_LIMIT
    # A BUSY answer is held this long: a flooding connection then costs the event loop one
    # cheap request per second instead of thousands (HTTP/1.1 clients wait for each answer).
    busy_delay: float = 1.0
    busy: int = 0  # requests answered BUSY, for the metric
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _good: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    _bad: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    _pending: dict[bytes, asyncio.Future[bool]] = field(default_factory=dict)
    _warned_long: set[str] = field(default_factory=set)

    async def verify(self, header: str | None) -> bool:
        """True when `header` carries a configured user and their password."""
        return await self.judge(header) is Verdict.OK

    async def judge(self, header: str | None) -> Verdict:
        """OK, DENIED, or BUSY when the check would have to queue behind too many others."""
        credentials = _parse_basic(header)
        if credentials is None:
            return Verdict.DENIED
        user, password = credentials
        key = hmac.digest(self._key, user + b"\0" + password, hashlib.sha256)
        for cache, verdict in ((self._good, Verdict.OK), (self._bad, Verdict.DENIED)):
            if key in cache:
                cache.move_to_end(key)
                return verdict
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self.queue_limit:
                self.busy += 1
                return Verdict.BUSY
            pending = asyncio.ensure_future(self._check(user, password))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        ok = await asyncio.shield(pending)
        cache, limit = (self._good, _GOOD_CACHE_SIZE) if ok else (self._bad, _BAD_CACHE_SIZE)
        cache[key] = None
        if len(cache) > limit:
            cache.popitem(last=False)
        if ok and len(password) > BCRYPT_MAX_PASSWORD:
            self._warn_long(user.decode("utf-8", "replace"))
        return Verdict.OK if ok else Verdict.DENIED

    async def _check(self, user: bytes, password: bytes) -> bool:
        hashed = self.users.get(user.decode("utf-8", "replace"))
        # An unknown user is checked against a real hash too, so timing does not reveal users.
        target = hashed if hashed is not None else next(iter(self.users.values()))
        loop = asyncio.get_running_loop()
        try:
            ok = await loop.run_in_executor(_pool(), self.check, password, target)
        except ValueError:  # a hash bcrypt cannot use, or a bcrypt that refuses long passwords
            ok = False
        return ok and hashed is not None

    def _warn_long(self, user: str) -> None:
        if user not in self._warned_long:
            self._warned_long.add(user)
            _log.warning(
                "basic auth user %r logged in with a password longer than %d bytes; bcrypt "
                "checks only the first %d, as exporter-toolkit does: use a shorter password",
                user[:40],
                BCRYPT_MAX_PASSWORD,
                BCRYPT_MAX_PASSWORD,
            )


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None
