"""The Makefile: `make help` names every target, `make demo` installs the runtime only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str) -> str:
    """`make` in the repository, outside any make that runs these tests."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(  # noqa: S603
        [shutil.which("make") or "make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def targets() -> set[str]:
    """Every target a user can name: the rules of the Makefile that are not files or variables."""
    text = MAKEFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    phony = set(re.search(r"^\.PHONY:(.*)$", text, re.M)[1].split())  # type: ignore[index]
    rules = {
        name for line in re.findall(r"^([a-z][\w -]*):(?!=)", text, re.M) for name in line.split()
    }
    assert rules <= phony, f"rules missing from .PHONY: {rules - phony}"
    return phony


def test_help_lists_every_target() -> None:
    listed = set(re.findall(r"^make ([\w-]+) ", make("help"), re.M))
    assert len(targets()) >= 15
    assert targets() - listed == set(), "make help does not list them"
    assert listed - targets() == set(), "make help lists targets that do not exist"


def test_demo_installs_the_runtime_only(tmp_path: Path) -> None:
    venv = str(tmp_path / "venv")
    demo = make("-n", "demo", f"VENV={venv}")
    installs = [line for line in demo.splitlines() if "pip install" in line]
    assert any(re.search(r"pip install --quiet -e \.$", line) for line in installs), demo
    assert not any("[" in line for line in installs), "make demo installs extras"
    assert "--demo" in demo


def test_test_installs_the_test_and_docs_toolchain(tmp_path: Path) -> None:
    text = make("-n", "test", f"VENV={tmp_path / 'venv'}")
    assert "pip install --quiet -e '.[test,docs]'" in text
    assert "mkdocs build --strict" in text and "python -m docsgen --check" in text
