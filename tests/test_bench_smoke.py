"""The benchmark still runs: `python bench/run.py --smoke`, tiny inputs, one run each.

No timing is asserted (speed is measured in benchmarks, not tests); what is
checked is that every case completes, prints its row, and that poorinit's
figures equal the plain h5py + numpy floor's (the script exits 1 otherwise).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("analyse vs physical floor", "analyse vs floor", "peak memory", "small trials", "trial length", "start-up",
           "big tensor: memory", "big tensor: time", "scan", "scan vs issue 13's start", "scan on Dask", "recording",
           "trial size")


def test_smoke_benchmark_prints_the_table(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--tmp", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| figure | what is compared | measured | target | met |" in result.stdout
    rows = {line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")}
    assert set(FIGURES) <= rows, result.stdout
    assert "MISMATCH" not in result.stdout
    assert list(tmp_path.iterdir()) == []  # the trials were removed


def test_smoke_recording_parts_prints_both_models():
    """bench/recording_parts.py (what the flush and the logits at the call would cost) still runs."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "recording_parts.py"), "--smoke"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "ms" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["2-layer transformer (seq 16, width 64)", "MLP 3x256"]
