"""The settings, regions and poll error reasons, from the settings table and the error tree."""

from __future__ import annotations

from docsgen.blocks import table
from exporter.domain import errors
from exporter.settings.regions import REGIONS, api_url, token_url
from exporter.settings.table import (
    FILE_KEYS,
    GLOBAL_SPECS,
    TARGET_SPECS,
    YAML_ONLY_KEYS,
    Spec,
    default_text,
)

# What the keys only the config file holds are (the settings table has no row for them).
YAML_ONLY_MEANING = {
    "targets": "one block per organisation, each with its own per-organisation settings "
    "(see Several organisations)",
    "service_levels": "ordered service-level rules: match, target, warning, calendar "
    "(see Service levels)",
    "calendars": "named business-hours clocks for the rules: timezone, hours, holidays",
}
HEADER = ("setting (YAML key)", "flag", "environment", "default", "meaning")


# Defaults that are words, not values.
_WORDS = {"required", "unset", "by region"}


def _code(text: str) -> str:
    if text in _WORDS:
        return f"*{text}*"
    return f"`{text}`" if text else "—"


def _row(spec: Spec) -> tuple[str, ...]:
    # config_file is the one setting the config file cannot hold.
    name = f"`{spec.name}` (not in the file)" if spec.name == "config_file" else f"`{spec.name}`"
    return (name, _code(spec.flag), _code(spec.env), _code(default_text(spec)), spec.help)


def render_settings() -> str:
    """Per-organisation settings, secret files, exporter-wide settings and YAML-only keys."""
    files = [
        (
            f"`{key}`",
            _code("--" + key.replace("_", "-")),
            _code(f"ALVARIA_{key.upper()}"),
            "—",
            f"read {name} from this file (trailing newline stripped); ranks below the YAML file",
        )
        for key, name in FILE_KEYS.items()
    ]
    missing = set(YAML_ONLY_KEYS) - set(YAML_ONLY_MEANING)
    if missing:
        raise ValueError(f"docsgen/settings.py: describe {sorted(missing)} in YAML_ONLY_MEANING")
    only = [(f"`{key}`", "—", "—", "—", meaning) for key, meaning in YAML_ONLY_MEANING.items()]
    return "\n".join(
        [
            "#### Per organisation\n",
            "Defaults for every `targets:` block, which may set each of them again.\n",
            table(HEADER, [*map(_row, TARGET_SPECS), *files]),
            "#### Exporter-wide\n",
            table(HEADER, [_row(spec) for spec in GLOBAL_SPECS]),
            "#### Only in the config file\n",
            table(HEADER, only),
        ]
    )


def render_regions() -> str:
    """Each region's token URL and API URL."""
    rows = [
        (
            f"`{region}`" + (" (default)" if region == "us" else ""),
            f"`{hosts.token_host}`",
            f"`{hosts.api_domain}`",
            f"`{token_url(region)}`",
            f"`{api_url(region, '{org_id}')}`",
        )
        for region, hosts in REGIONS.items()
    ]
    header = ("`region`", "token host", "API domain", "token URL", "API URL")
    return table(header, rows)


def render_poll_errors() -> str:
    """The `reason` label values of `poll_errors_total`, with what each means."""
    classes = {cls.reason: cls for cls in errors.PollError.__subclasses__()}
    rows = []
    for reason in errors.POLL_ERROR_REASONS:
        if reason == errors.INTERNAL_REASON:
            meaning = "A bug in the exporter, not the API: logged with its traceback. Report it."
        else:
            meaning = " ".join((classes[reason].__doc__ or "").split())
            if not meaning:
                raise ValueError(f"{classes[reason].__name__} has no docstring to show")
        rows.append((f"`{reason}`", meaning))
    return table(("reason", "meaning"), rows)
