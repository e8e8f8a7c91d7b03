"""Which organisations this replica polls: jump consistent hashing of API-key fingerprints.

Targets are grouped by `api_key`, so every organisation behind one key (and so one rate
limit) lives in one replica. Each group goes to the shard that jump consistent hashing
(Lamping and Veach, 2014) picks for the key's fingerprint: growing from n to n+1 shards moves
only the groups that go to the new shard, about 1/(n+1) of them, and shrinking moves only the
groups of the shard that goes away. Finding the owner of a key costs O(log n) steps, so
ownership is O(keys) whatever the number of shards (rendezvous hashing, used before, scored
every shard for every key: O(keys x shards), 1.3 s per key at a million shards).

The key itself is never hashed into anything visible: only an 8-byte BLAKE2b fingerprint of it
is used, and Python's salted `hash()` never (it differs between processes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")

_MASK = (1 << 64) - 1


def key_fingerprint(api_key: str) -> bytes:
    """A stable 8-byte fingerprint of an API key; the same in every process and release."""
    return hashlib.blake2b(api_key.encode(), digest_size=8, person=b"alvaria-key").digest()


def owner(fingerprint: bytes, total_shards: int) -> int:
    """The shard (0 .. total_shards-1) that owns the group with this fingerprint."""
    if total_shards < 1:
        raise ValueError("total_shards must be at least 1")
    key = int.from_bytes(fingerprint, "big")
    shard, candidate = -1, 0
    while candidate < total_shards:  # about ln(total_shards) rounds
        shard = candidate
        key = (key * 2862933555777941757 + 1) & _MASK
        candidate = int((shard + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return shard


def owned(
    targets: Iterable[T], shard: int, total_shards: int, api_key: Callable[[T], str]
) -> list[T]:
    """The targets `shard` polls, in their configured order; pure, O(targets)."""
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
