"""YAML of the effective settings for --check-config, every secret masked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from exporter.settings.models import Settings

SECRET_MASK = "********"  # noqa: S105 - the mask, not a password


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
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
