"""Bounded reads of the files settings name, and YAML without aliases.

Every file a setting names is read through `read_bounded`: it must be a regular file (or a
symlink to one) no larger than its limit, and it is opened non-blocking, so a FIFO, a device
such as /dev/zero or a huge file is a configuration error at once instead of a hang or a
MemoryError. Errors are `ValueError`s whose message names the file but never quotes its content.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path
from typing import Any

import yaml

CONFIG_FILE_LIMIT = 1024 * 1024  # the YAML config file and the web config file
SECRET_FILE_LIMIT = 64 * 1024  # api_key_file, client_secret_file, access_token_file
PEM_FILE_LIMIT = 1024 * 1024  # ca_file and the web config's certificates and keys
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _size(limit: int) -> str:
    return f"{limit // 1024 // 1024} MiB" if limit % (1024 * 1024) == 0 else f"{limit // 1024} KiB"


def check_regular(path: Path, limit: int) -> None:
    """Raise ValueError unless `path` is a regular file (symlinks followed) of at most `limit` bytes."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
        raise ValueError(f"{path} is {kind}, not a regular file")
    if info.st_size > limit:
        raise ValueError(f"{path} is larger than {_size(limit)}")


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; never blocks on a FIFO."""
    check_regular(path, limit)
    try:
        # O_NONBLOCK: should the file have been swapped for a FIFO since the stat, open returns.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError(f"{path} is larger than {_size(limit)}")
    return b"".join(chunks)


def read_text(path: Path, limit: int) -> str:
    """`read_bounded` decoded as UTF-8."""
    try:
        return read_bounded(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None


class _RefuseAliases(yaml.composer.Composer):
    """A composer that refuses aliases: `*name` can expand exponentially (a "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):  # type: ignore[attr-defined]
            mark = self.peek_event().start_mark  # type: ignore[attr-defined]
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not supported", mark
            )
        return super().compose_node(parent, index)


class _NoAliasLoader(_RefuseAliases, yaml.SafeLoader):
    """SafeLoader that refuses aliases.

    Dates and times stay text: PyYAML would turn ``2026-02-30`` into an error about the whole
    file; as text, the setting that holds it parses it and names its own place
    (``calendars.office.holidays[0]``).
    """


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_yaml_str(node)


_NoAliasLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
_LOADER: Any = _NoAliasLoader

# libyaml's scanner and parser, when PyYAML was built with it (its wheels are), with the
# composition and construction in Python: a file of 300 organisations and 1,000 rules loads in
# 0.2 s instead of 1.5 s, and (unlike CSafeLoader, which composes the whole document in one C
# call holding the GIL) gives the event loop its turn while a reload reads it in a thread.
if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser

    class _CNoAliasLoader(_RefuseAliases, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # fmt: skip
        """_NoAliasLoader with libyaml's parser."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _CNoAliasLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
    _LOADER = _CNoAliasLoader


def parse_yaml(text: str) -> Any:
    """The YAML document in `text`; ValueError names the position, never the line's content."""
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - SafeConstructor, aliases refused
    except yaml.YAMLError as exc:
        # Only the problem and position: str(exc) quotes the offending line, maybe a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        if "nesting depth" in problem:  # libyaml's words for it
            problem = "nested too deeply"
        raise ValueError(f"invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ValueError("invalid YAML: nested too deeply") from None


def read_yaml(path: Path) -> Any:
    """The YAML document in a config file of at most CONFIG_FILE_LIMIT bytes."""
    return parse_yaml(read_text(path, CONFIG_FILE_LIMIT))


def client_ssl_context(path: Path) -> ssl.SSLContext:
    """A verifying client SSLContext trusting the PEM bundle at `path` (ValueError if unusable)."""
    text = read_text(path, PEM_FILE_LIMIT)
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        return ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or "not a valid PEM certificate bundle"
        raise ValueError(f"{path} is not a usable PEM CA bundle: {reason}") from None
