"""Where this build came from, for `alvaria_emailqueue_exporter_build_info` and the landing page.

The source revision is a one-line text file, ``exporter/REVISION``, written into the package
when it is built (the image build writes its ``REVISION`` argument there); without it, or with
anything but a plain revision in it, the revision is ``unknown``.
"""

from __future__ import annotations

import functools
import platform
import re
from importlib import resources
from importlib.resources.abc import Traversable

from exporter import __version__

UNKNOWN = "unknown"
# A git hash, a tag or a describe string; nothing that could carry markup or a newline.
_REVISION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")


def parse_revision(text: str | None) -> str:
    """The revision in `text` (first line, trimmed), or `unknown`."""
    line = (text or "").strip().splitlines()[0:1]
    value = line[0].strip() if line else ""
    return value if _REVISION.fullmatch(value) and value != UNKNOWN else UNKNOWN


def read_revision(package: Traversable) -> str:
    """The revision in `package`'s REVISION file, or `unknown` when it is missing or odd."""
    try:
        with package.joinpath("REVISION").open("rb") as file:
            text = file.read(256).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return UNKNOWN
    return parse_revision(text)


@functools.cache
def revision() -> str:
    """The source revision this package was built from, read once."""
    return read_revision(resources.files("exporter"))


def labels() -> tuple[str, str, str]:
    """(version, revision, python_version), the labels of build_info."""
    return __version__, revision(), platform.python_version()
