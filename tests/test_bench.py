"""`python -m bench --quick` runs end to end and prints its table (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_prints_the_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "| emails | floor wall | exporter wall |" in out
    assert "| 1,000 |" in out
    assert "p99" in out
    assert "PASS  poll CPU" in out or "FAIL  poll CPU" in out
    assert "| samples | body | fresh | warm | baseline |" in out
    assert "/healthz ≤ 50 ms worst during renders" in out
    assert "| daemon poll |" in out and "| orjson floor |" in out
    # The handling KPIs' cost on both queue shapes, and the uniform shape against the floor.
    assert "| large | 1,000 |" in out and "| uniform | 1,000 |" in out
    assert "handling KPIs add ≤ 10% to a poll's CPU (uniform queue)" in out
    assert "daemon poll CPU ≤ 1.2x orjson floor (uniform queue)" in out
    assert "| endless bodies on pages 2-5 | 3 | decode x3 |" in out
    assert "| totalItems of 10^30 | 2 | decode x2 |" in out
    assert "FAIL  hostile upstream: no internal errors" not in out
