"""When memory runs out, poorinit says so: one line, exit 2, the file named when known.

Never "internal error" (it is no bug), never "the file is damaged" (the file
may be fine), never a crash. Each case runs the CLI's ``main`` in a real
subprocess whose address space is capped (``resource.setrlimit(RLIMIT_AS)``)
at what it uses once its modules are imported, plus a little headroom: the
cap then bites while a trial is read, wherever that happens to be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from poorinit import TrialWriter

from .test_errors_doc import expect_error

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")

# Imports first (what a run costs before it reads anything), then the cap, then the CLI.
CAPPED = textwrap.dedent("""
    import os, resource, sys
    import numpy, h5py, rich.console, rich.table
    import poorinit.cli, poorinit.analysis, poorinit.sources, poorinit.inspect, poorinit.scan, poorinit.report.table
    import poorinit.trial, poorinit.h5direct
    poorinit.trial.DIRECT_READS = os.environ.get("READER") != "hdf5"
    used = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = used + (int(sys.argv[1]) << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    sys.exit(poorinit.cli.main(sys.argv[2:]))
""")


def capped(headroom_mib: int, *args: object, reader: str = "direct") -> subprocess.CompletedProcess[str]:
    """The CLI under a cap; ``reader="hdf5"`` opens step files with HDF5 even where poorinit.h5direct reads them."""
    return subprocess.run([sys.executable, "-c", CAPPED, str(headroom_mib), *map(str, args)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "READER": reader})


@pytest.fixture(scope="module")
def large_trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two steps of three 2 MiB tensors: read in 4 MiB blocks, measured with float64 temporaries."""
    path = tmp_path_factory.mktemp("memory") / "large"
    rng = np.random.default_rng(0)
    with TrialWriter(path, fsync=False) as writer:
        for step in range(2):
            writer.write_step(
                step,
                activation_inputs={f"net.{i}.relu_input": rng.normal(0, 1, (512, 1024)).astype(np.float32)
                                   for i in range(2)},
                gradients={"gradient/net.0.weight": rng.normal(0, 0.05, (512, 1024)).astype(np.float32)},
                losses={"loss": 2.0 - 0.1 * step},
            )
    return path


def out_of_memory(result: subprocess.CompletedProcess[str]) -> str:
    """One line that says memory ran out, and nothing that blames the file or poorinit."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "ran out of memory" in lines[0], lines[0]
    assert "damaged" not in lines[0] and "internal error" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


def test_with_no_headroom_hdf5_names_the_first_file_it_could_not_open(large_trial: Path) -> None:
    message = expect_error(capped(0, "analyze", large_trial, "--quiet", reader="hdf5"), "file-out-of-memory")
    assert "000000000000_train_0.h5" in message and "could not be reserved to open it" in message


def test_with_no_headroom_analyze_names_the_first_file_and_tensor_it_could_not_read(large_trial: Path) -> None:
    """Read without HDF5 (poorinit.h5direct), opening a file needs no reserve: the first block is what fails."""
    message = expect_error(capped(0, "analyze", large_trial, "--quiet"), "tensor-out-of-memory")
    assert "000000000000_train_0.h5" in message and "net.0.relu_input" in message


@pytest.mark.parametrize(("reader", "headroom"), [("direct", 6), ("hdf5", 12)])
def test_with_a_little_headroom_analyze_runs_out_while_reading(large_trial: Path, reader: str, headroom: int) -> None:
    """Out of memory in a block read names the tensor, or in the arithmetic between reads the step.

    HDF5 needs some megabytes of its own per open file; the direct reader, none."""
    message = out_of_memory(capped(headroom, "analyze", large_trial, "--quiet", "--steps", "2", reader=reader))
    assert str(large_trial) in message


def test_inspect_out_of_memory(large_trial: Path) -> None:
    expect_error(capped(0, "inspect", large_trial, reader="hdf5"), "file-out-of-memory", large_trial)


def test_inspect_without_hdf5_needs_almost_no_memory(large_trial: Path) -> None:
    """The direct reader reads kilobytes of metadata: with no headroom at all, inspect succeeds, or
    memory runs out later, drawing the table (rich imports on first use), and it says so."""
    result = capped(0, "inspect", large_trial)
    if result.returncode != 0:
        out_of_memory(result)


def test_scan_reports_the_trial_that_ran_out_and_exits_2(large_trial: Path) -> None:
    result = capped(0, "scan", large_trial.parent, "--jobs", "1", "--format", "jsonl")
    assert result.returncode == 2, result.stderr
    (line,) = result.stdout.splitlines()
    assert '"status":"error"' in line and "ran out of memory" in line and "damaged" not in line


def test_with_room_enough_the_same_trial_passes(large_trial: Path) -> None:
    """The cap is what fails the cases above, not the driver."""
    result = capped(512, "analyze", large_trial, "--quiet", "--steps", "2")
    assert result.returncode == 0, result.stderr
