"""The command line parsed into raw values; every argument error becomes a ConfigError line."""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from exporter.domain.errors import ConfigError, ConfigErrors
from exporter.settings.table import build_parser

_ARGUMENT = re.compile(r"argument (\S+?)(?:/\S+)?: (.*)", re.DOTALL)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting with its two lines."""

    def error(self, message: str) -> NoReturn:
        match = _ARGUMENT.fullmatch(message)
        if match:
            flag, problem = match[1], match[2]
            raise ConfigError(flag.lstrip("-").replace("-", "_"), f"flag {flag}", problem)
        raise ConfigError("arguments", "command line", message)


def _flag_of(arg: str) -> str:
    # Only the name: `--api-keyy=value` must not echo the value.
    return arg.split("=", 1)[0]


def parse_argv(argv: Sequence[str]) -> dict[str, Any]:
    """The parsed flags by setting name; raises ConfigErrors naming every unknown flag."""
    parser = build_parser(_Parser)
    args, extra = parser.parse_known_args(list(argv))
    errors: list[ConfigError] = []
    flags = sorted(s for action in parser._actions for s in action.option_strings)
    for arg in extra:
        if arg.startswith("-"):
            flag = _flag_of(arg)
            close = difflib.get_close_matches(flag, flags, n=1)
            hint = f"; did you mean {close[0]}?" if close else "; see --help"
            name = flag.lstrip("-").replace("-", "_")[:40]
            errors.append(ConfigError(name, f"flag {flag[:42]}", f"unknown flag{hint}"))
        elif not errors:  # a value after an unknown flag is not worth its own line
            errors.append(
                ConfigError("arguments", "command line", "unexpected argument; flags start with --")
            )
    if errors:
        raise ConfigErrors(errors)
    return vars(args)
