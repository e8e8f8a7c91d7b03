"""YAML of the effective settings for --check-config, every secret masked.

Durations and sizes are written the way a setting is (``30s``, ``1h30m``, ``32MiB``), so the dump
reads back as a config file; with the sources of `load` each value's origin follows as a comment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from exporter.settings.models import Settings
from exporter.settings.table import SPEC_OF
from exporter.settings.values import format_duration, format_size

SECRET_MASK = "********"  # noqa: S105 - the mask, not a password
# libyaml's emitter when PyYAML has it (the representer stays Python, the slow half).
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Longer lists are written one item per line, as JSON (a YAML flow mapping): 10,000 targets in
# a fraction of a second instead of ten, and still a YAML document that reads back the same.
_BLOCK_ITEMS = 50
# Keys of a service_levels rule that hold durations.
_RULE_DURATIONS = ("target", "warning")
_TOP = re.compile(r"^([a-z_]+):")
_ITEM = re.compile(r"^(- |  )([a-z_]+):")


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return SECRET_MASK
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def _as_written(key: str, value: Any) -> Any:
    """A top-level value in the notation its setting is written in."""
    kind = SPEC_OF[key].kind if key in SPEC_OF else ""
    if kind == "duration" and isinstance(value, int | float):
        return format_duration(value)
    if kind == "size" and isinstance(value, int):
        return format_size(value)
    if kind == "buckets":
        return [int(v) if float(v).is_integer() else v for v in value]
    if key == "service_levels":
        return [
            {k: format_duration(v) if k in _RULE_DURATIONS and v is not None else v
             for k, v in rule.items()}
            for rule in value
        ]  # fmt: skip
    return value


def _annotate(text: str, sources: Mapping[str, str]) -> str:
    """Each setting's line of the dump followed by `# from <source>` (or `# default`)."""
    lines, in_targets, target = [], False, -1
    for line in text.splitlines():
        name = None
        if top := _TOP.match(line):
            name, in_targets = top[1], top[1] == "targets"
        elif in_targets and (item := _ITEM.match(line)):
            target += item[1] == "- "
            name = f"targets[{target}].{item[2]}"
        if name is not None and name != "targets":
            source = sources.get(name)
            line += f"  # from {source}" if source else "  # default"
        lines.append(line)
    return "\n".join(lines) + "\n"


def masked_dump(settings: Settings, sources: Mapping[str, str] | None = None) -> str:
    """YAML of the effective settings with every secret shown as ``********``.

    `config_file` is shown as a comment: a config file cannot name itself, and the dump should
    read back as one. With `sources` (setting name, ``targets[0].org_id`` inside a target, to
    where its value came from), each line says where its value came from.
    """
    data = _plain(settings)
    config_file = data.pop("config_file", None)
    data = {key: _as_written(key, value) for key, value in data.items()}
    header = f"# config_file: {config_file}\n" if config_file else ""
    parts: list[str] = []
    block: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, list) and len(value) > _BLOCK_ITEMS:
            if block:
                parts.append(_yaml(block))
                block = {}
            lines = "".join(f"- {json.dumps(item, ensure_ascii=False)}\n" for item in value)
            parts.append(f"{key}:\n{lines}")
        else:
            block[key] = value
    if block:
        parts.append(_yaml(block))
    text = "".join(parts)
    return header + (text if sources is None else _annotate(text, sources))


def _yaml(data: dict[str, Any]) -> str:
    dumped = yaml.dump(data, Dumper=_DUMPER, sort_keys=False, allow_unicode=True, width=1 << 30)
    return str(dumped)
