"""Label values that come from upstream, made safe to export.

A label value is written into every scrape and kept by Prometheus for every sample, so one
from upstream is bounded before it becomes a label: characters that would break or disguise
the exposition (controls, line and paragraph separators, bidi overrides and other invisible
format characters, lone surrogates) become `?`, and a value longer than `max_length` is cut
and ends in `~` plus 6 hex digits of a hash of the whole value, so two long names that share
a prefix stay two series.
"""

from __future__ import annotations

import hashlib
import unicodedata

# Unicode categories replaced by `?`: controls (CR, LF, NUL, BEL...), format characters (bidi
# overrides U+202A-202E and U+2066-2069, zero-width characters...), surrogates (cannot be
# encoded as UTF-8) and the line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
HASH_SUFFIX = 7  # "~" and 6 hex digits


def bound_label(value: str, max_length: int) -> str:
    """`value` with unsafe characters replaced and cut to `max_length` characters."""
    if len(value) <= max_length and value.isprintable():
        return value  # the common case: nothing to do
    clean = "".join(
        "?" if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in value[: max_length + 1]
    )
    if len(value) <= max_length:
        return clean
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=3).hexdigest()
    return f"{clean[: max_length - HASH_SUFFIX]}~{digest}"


def fold_key(label: str, value: str) -> int:
    """The remembered form of a folded value."""
    return hash((label, value))
