"""build_info's revision, and the standard process and runtime collectors in our registry."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app.wiring import build_registry
from exporter.metrics import buildinfo
from exporter.metrics.textformat import render
from exporter.polling.store import Store
from exporter.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4aec4061f2d5c0e8b1d5a9f3c2e1b0a9d8c7b6a5\n", "4aec4061f2d5c0e8b1d5a9f3c2e1b0a9d8c7b6a5"),
        ("v0.1.0-3-g4aec406", "v0.1.0-3-g4aec406"),
        ("  abc123  \nsecond line", "abc123"),
        ("", "unknown"),
        ("unknown", "unknown"),
        ('"><script>', "unknown"),  # never markup on the landing page or a broken label
        ("a" * 65, "unknown"),
    ],
)
def test_parse_revision(text: str, expected: str) -> None:
    assert buildinfo.parse_revision(text) == expected


def test_read_revision_from_a_package_directory(tmp_path: Path) -> None:
    assert buildinfo.read_revision(tmp_path) == "unknown"  # not written at build time
    (tmp_path / "REVISION").write_text("4aec406\n", encoding="utf-8")
    assert buildinfo.read_revision(tmp_path) == "4aec406"
    (tmp_path / "REVISION").write_bytes(b"\xff\xfe")
    assert buildinfo.read_revision(tmp_path) == "unknown"


def test_the_image_build_writes_its_revision_into_the_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    build_stage = dockerfile.split("\nFROM ", 2)[1]
    assert re.search(r"^ARG REVISION=unknown$", build_stage, re.M)
    write = build_stage.index("exporter/REVISION")
    assert write < build_stage.index("pip wheel")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    package_data = pyproject.split("[tool.setuptools.package-data]", 1)[1]
    assert re.search(r'^exporter = \[.*"REVISION".*\]$', package_data, re.M)


def test_registry_has_process_and_runtime_collectors() -> None:
    registry = build_registry(Store(["acme"]), Settings())
    families = {f.name: f for f in text_string_to_metric_families(render(registry).decode())}
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds",
        "process_open_fds",
        "process_start_time_seconds",
        "python_gc_objects_collected",
        "python_info",
        "alvaria_emailqueue_exporter_build_info",
    ):
        assert name in families, sorted(families)
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    (build,) = families["alvaria_emailqueue_exporter_build_info"].samples
    assert build.labels["revision"] == buildinfo.revision()


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(  # noqa: S603
        [shutil.which("git") or "git", "-C", str(cwd), *args],
        check=True,
        capture_output=True,
        env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
             "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
             "PATH": os.environ.get("PATH", "")},
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_checkout_describes_itself(tmp_path: Path) -> None:
    assert buildinfo.describe_checkout(tmp_path) == "unknown"  # no .git: an installed copy
    _git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "commit", "-q", "-m", "c")
    _git(tmp_path, "tag", "v9.9.9")
    assert buildinfo.describe_checkout(tmp_path) == "v9.9.9"
    (tmp_path / "f").write_text("changed")
    assert buildinfo.describe_checkout(tmp_path) == "v9.9.9-dirty"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_package_run_from_this_checkout_knows_its_revision() -> None:
    # `make demo` installs the checkout in place (pip install -e .): no REVISION file is written,
    # so the revision comes from git describe, not `unknown`.
    if not (ROOT / ".git").exists() or (ROOT / "exporter" / "REVISION").exists():
        pytest.skip("not a checkout without a REVISION file")
    buildinfo.revision.cache_clear()
    try:
        assert buildinfo.revision() != "unknown"
        assert buildinfo.revision() == buildinfo.describe_checkout(ROOT)
    finally:
        buildinfo.revision.cache_clear()
