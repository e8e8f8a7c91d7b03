"""The kustomize overlays the Deployment page shows build where its step 2 puts them: next to deploy/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "docs" / "deployment.md"
SNIPPET = re.compile(r"```yaml\n# ([\w.-]+)/kustomization\.yaml\n(.*?)```", flags=re.DOTALL)
# The only file a snippet may leave to the reader: its own organisations.
SUPPLIED = {
    "config.yaml": ROOT / "deploy" / "kubernetes" / "overlays" / "multi-org" / "config.yaml"
}


def snippets() -> list[tuple[str, str]]:
    """(overlay directory, kustomization text) for every overlay the guide shows."""
    return SNIPPET.findall(README.read_text())


def local_files(kustomization: dict[str, object]) -> set[str]:
    """Files of the overlay's own directory that the kustomization names."""
    names: set[str] = set()
    for generator in kustomization.get("configMapGenerator", []) or []:  # type: ignore[attr-defined]
        names |= {f.split("=")[-1] for f in generator.get("files", [])}
    for patch in kustomization.get("patches", []) or []:  # type: ignore[attr-defined]
        if isinstance(patch, dict) and "path" in patch:
            names.add(patch["path"])
    return names


def test_the_guide_shows_overlays() -> None:
    assert {name for name, _ in snippets()} >= {"my-overlay"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize(("name", "text"), snippets(), ids=[n for n, _ in snippets()])
def test_overlay_builds_next_to_deploy(tmp_path: Path, name: str, text: str) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    overlay = tmp_path / name
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(text)
    for file in local_files(yaml.safe_load(text)):
        assert file in SUPPLIED, f"{name} needs {file}, which the guide does not show"
        shutil.copy(SUPPLIED[file], overlay / file)
    result = subprocess.run(  # noqa: S603
        [shutil.which("kubectl") or "kubectl", "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc}
    assert "Service" in kinds
