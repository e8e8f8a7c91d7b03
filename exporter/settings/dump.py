"""YAML of the effective settings for --check-config, every secret masked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from exporter.settings.models import Settings

SECRET_MASK = "********"  # noqa: S105 - the mask, not a password
# libyaml's emitter when PyYAML has it (the representer stays Python, the slow half).
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Longer lists are written one item per line, as JSON (a YAML flow mapping): 10,000 targets in
# a fraction of a second instead of ten, and still a YAML document that reads back the same.
_BLOCK_ITEMS = 50


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


def masked_dump(settings: Settings) -> str:
    """YAML of the effective settings with every secret shown as ``********``.

    `config_file` is shown as a comment: a config file cannot name itself, and the dump should
    read back as one.
    """
    data = _plain(settings)
    config_file = data.pop("config_file", None)
    header = f"# config_file: {config_file}\n" if config_file else ""
    parts = []
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
    return header + "".join([*parts, _yaml(block) if block else ""])


def _yaml(data: dict[str, Any]) -> str:
    return str(yaml.dump(data, Dumper=_DUMPER, sort_keys=False, allow_unicode=True))
