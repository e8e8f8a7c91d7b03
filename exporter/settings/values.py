"""Parsing of raw values (env, flags, files) or YAML scalars and lists into Python values."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import SecretStr

_DURATION_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)"
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_BOOLS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLS |= {"false": False, "0": False, "no": False, "off": False}


_SHOWN = 40  # characters of a non-secret value quoted in an error: a pasted secret stays hidden


def shown(raw: Any) -> str:
    """`raw` as quoted in an error message, cut to about 40 characters."""
    text = repr(raw)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 4]}...{text[-1]}"


def check_secret(value: str) -> None:
    """Raise ValueError when a secret holds what no key or token does; never quotes it."""
    if value.startswith("\ufeff"):
        raise ValueError("starts with a byte-order mark (save the file as UTF-8 without BOM)")
    if any(c.isspace() for c in value):
        raise ValueError("contains whitespace (the value is not shown)")
    if not value.isprintable():
        raise ValueError("contains a control or invisible character (the value is not shown)")


def type_name(raw: Any) -> str:
    """How the type of a YAML value reads in an error message."""
    return {list: "a list", dict: "a mapping", bool: "a boolean"}.get(type(raw), type(raw).__name__)


def parse_duration(raw: Any) -> float:
    """Seconds from ``30``, ``2.5``, ``30s``, ``5m``, ``1h30m`` or ``500ms``."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not re.fullmatch(f"(?:{_DURATION_PART})+", text):
                raise ValueError(
                    f"{shown(raw)} is not a duration: use seconds (30, 2.5) or 30s, 5m, 1h30m, 500ms"
                ) from None
            parts = re.findall(_DURATION_PART, text)
            # Milliseconds divided, not multiplied by 0.001: 950ms is exactly the float 0.95.
            seconds = sum(
                float(n) / 1000 if unit == "ms" else float(n) * UNIT_SECONDS[unit]
                for n, unit in parts
            )
    else:
        raise ValueError(f"must be a duration, not {type_name(raw)}")
    if not math.isfinite(seconds):
        raise ValueError("must be a finite number of seconds")
    return seconds


def parse_number(raw: Any) -> float | None:
    """A finite number from a YAML number or a string (``0.5``, ``2``, ``1e-3``); "" is None."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        number = float(raw)
    elif isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            number = float(raw.strip())
        except ValueError:
            raise ValueError(f"{shown(raw)} is not a number") from None
    else:
        raise ValueError(f"must be a number, not {type_name(raw)}")
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


def format_duration(seconds: float) -> str:
    """A duration as it is written in a setting: ``30s``, ``5m``, ``1h30m``, ``2.5s``, ``500ms``.

    `parse_duration` reads every result back to the same number of seconds.
    """
    seconds = float(seconds)
    if 0 < seconds < 1 and (seconds * 1000).is_integer() and int(seconds * 1000) / 1000 == seconds:
        return f"{int(seconds * 1000)}ms"
    if not seconds.is_integer():
        return f"{Decimal(repr(seconds)):f}s"  # every digit, never an exponent
    whole, parts = int(seconds), []
    for unit in ("h", "m", "s"):
        count, whole = divmod(whole, int(UNIT_SECONDS[unit]))
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_size(size: int) -> str:
    """A byte count as it is written in a setting: ``32MiB``, ``512KiB``, else plain bytes."""
    for power, unit in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if size and size % 1024**power == 0:
            return f"{size // 1024**power}{unit}"
    return str(size)


def parse_size(raw: Any) -> int:
    """Bytes from ``1048576``, ``512KiB``, ``10MB`` or ``64MiB``."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    match = _SIZE.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        raise ValueError(f"{shown(raw)} is not a size: use bytes or 512KiB, 10MB, 64MiB, 1GiB")
    unit = (match[2] or "b").lower()
    scale = 1 if unit == "b" else (1024 if "i" in unit else 1000) ** " kmgt".index(unit[0])
    number = float(match[1]) if "." in match[1] else int(match[1])
    return int(number * scale)


def convert(kind: str, raw: Any) -> Any:
    """Turn one raw value into the Python value of a setting of the given kind."""
    if kind == "duration":
        return parse_duration(raw)
    if kind == "size":
        return parse_size(raw)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        key = str(raw).strip().lower() if isinstance(raw, str | int) else ""
        if key not in _BOOLS:
            raise ValueError("must be true/false, 1/0 or yes/no")
        return _BOOLS[key]
    if kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, float) and raw.is_integer():  # YAML's 500.0
            return int(raw)
        if not (isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw)):
            raise ValueError(f"{shown(raw)} is not a whole number")
        return int(raw)
    if kind == "number":  # optional: empty means unset
        return parse_number(raw)
    if kind in ("strs", "buckets"):
        if isinstance(raw, str):
            items: list[Any] = [item.strip() for item in raw.split(",") if item.strip()]
        elif isinstance(raw, list):
            items = raw
        else:
            raise ValueError(f"must be a comma-separated string or a list, not {type_name(raw)}")
        if kind == "buckets":
            return tuple(parse_duration(item) for item in items)
        return tuple(convert("str", item) for item in items)
    if kind == "secret":
        if not isinstance(raw, str):
            raise ValueError(f"must be a string, not {type_name(raw)} (quote it in YAML)")
        check_secret(raw)
        return SecretStr(raw)
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ValueError(f"must be a string, not {type_name(raw)}")
    text = str(raw).strip()
    if kind == "text":  # a string where empty means something (token_realm: "" = send none)
        return text
    if not text:
        if kind in ("opt", "path"):
            return None
        raise ValueError("must not be empty")
    if kind == "path":
        return Path(text)
    return text.lower() if kind == "choice" else text


def host_ordinal(hostname: str) -> int:
    """The ordinal at the end of a StatefulSet pod's host name: ``exporter-3`` → 3."""
    name = hostname.split(".", 1)[0]
    _, sep, digits = name.rpartition("-")
    if not sep or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"host name {hostname!r} does not end in -<ordinal>, as in name-3")
    return int(digits)
