"""Which organisations this replica polls: rendezvous hashing of API-key fingerprints.

Targets are grouped by `api_key`, so every organisation behind one key (and so one rate
limit) lives in one replica. Each group goes to the shard with the highest score
``h(fingerprint, shard)`` (highest random weight, as in go-rendezvous): growing from n to n+1
shards moves only the groups whose new top score is the new shard, about 1/(n+1) of them.

The key itself is never hashed into anything visible: only an 8-byte BLAKE2b fingerprint of it
is used, and Python's salted `hash()` never (it differs between processes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def key_fingerprint(api_key: str) -> bytes:
    """A stable 8-byte fingerprint of an API key; the same in every process and release."""
    return hashlib.blake2b(api_key.encode(), digest_size=8, person=b"alvaria-key").digest()


def _score(fingerprint: bytes, shard: int) -> int:
    digest = hashlib.blake2b(fingerprint + shard.to_bytes(4, "big"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(fingerprint: bytes, total_shards: int) -> int:
    """The shard (0 .. total_shards-1) that owns the group with this fingerprint."""
    if total_shards < 1:
        raise ValueError("total_shards must be at least 1")
    # max() keeps the first of equal scores, so a tie goes to the lowest shard: deterministic.
    return max(range(total_shards), key=lambda shard: _score(fingerprint, shard))


def owned(
    targets: Iterable[T], shard: int, total_shards: int, api_key: Callable[[T], str]
) -> list[T]:
    """The targets `shard` polls, in their configured order; pure."""
    if not 0 <= shard < total_shards:
        raise ValueError(f"shard {shard} is not below total_shards {total_shards}")
    owners: dict[str, int] = {}
    kept = []
    for target in targets:
        key = api_key(target)
        if key not in owners:
            owners[key] = owner(key_fingerprint(key), total_shards)
        if owners[key] == shard:
            kept.append(target)
    return kept
