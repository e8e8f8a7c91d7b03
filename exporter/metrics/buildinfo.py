"""Where this build came from, for `alvaria_emailqueue_exporter_build_info` and the landing page.

The source revision is a one-line text file, ``exporter/REVISION``, written into the package
when it is built (the image build writes its ``REVISION`` argument there). Without it, a package
run from a git checkout (an editable install, `make demo`) asks ``git describe`` once, bounded in
time and output; otherwise, or with anything but a plain revision, the revision is ``unknown``.
"""

from __future__ import annotations

import functools
import platform
import re
import shutil
import subprocess
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

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


def describe_checkout(root: Path, timeout: float = 2.0) -> str:
    """`git describe --always --dirty --tags` of the checkout at `root`, or `unknown`.

    Asked only when `root` holds a `.git` (a checkout, not an installed copy), with a time limit;
    the answer goes through `parse_revision` like the file's.
    """
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        return UNKNOWN
    try:
        result = subprocess.run(  # noqa: S603 - a fixed command, no shell
            [git, "-C", str(root), "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    if result.returncode != 0:
        return UNKNOWN
    return parse_revision(result.stdout[:256].decode("utf-8", "replace"))


@functools.cache
def revision() -> str:
    """The source revision this package was built from (or its checkout's), found once."""
    package = resources.files("exporter")
    found = read_revision(package)
    if found == UNKNOWN and isinstance(package, Path):
        found = describe_checkout(package.parent)
    return found


def labels() -> tuple[str, str, str]:
    """(version, revision, python_version), the labels of build_info."""
    return __version__, revision(), platform.python_version()
