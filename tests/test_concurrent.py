"""A reader beside a writer: no torn reads, ever.

A real second process writes a thousand small steps with TrialWriter while
this process lists the trial and reads every step file it sees, over and over.
Every file listed must open, validate and hold exactly the values its step
was written with (a compact tensor, a chunked one and the loss), because the
writer makes each file under a temporary name and renames it when complete.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from poorinit import Trial, TrialError
from poorinit.format import worker_finished_marker

STEPS = 1000

WRITER = """
import sys
import numpy as np
from poorinit import TrialWriter

path, steps = sys.argv[1], int(sys.argv[2])
with TrialWriter(path) as writer:
    for step in range(steps):
        writer.write_step(
            step,
            activation_inputs={
                "net.0.relu_input": np.full((8, 8), step, np.float32),
                "net.2.relu_input": np.arange(64, dtype=np.float32).reshape(8, 8) * (step + 1),
            },
            gradients={"gradient/net.0.weight": np.arange(4000, dtype=np.float32) + step},  # 16 KB: chunked
            losses={"loss": float(step)},
        )
"""


def expected(step: int) -> dict[str, np.ndarray]:
    return {
        "net.0.relu_input": np.full(64, step, np.float32),
        "net.2.relu_input": np.arange(64, dtype=np.float32) * (step + 1),
        "gradient/net.0.weight": np.arange(4000, dtype=np.float32) + step,
        "loss": np.array([step], np.float64),
    }


def read_back(trial: Trial, step_file) -> None:
    with trial.open(step_file) as reader:
        names = dict(reader.tensor_names())
        want = expected(step_file.step)
        assert set(names) == set(want), names
        for name, values in want.items():
            got = np.concatenate([block.reshape(-1) for block in reader.tensor(name).blocks()])
            np.testing.assert_array_equal(got, values, err_msg=f"{step_file.path.name}: {name}")


def test_a_reader_never_sees_a_torn_step_file(tmp_path):
    path = tmp_path / "trial"
    log = tmp_path / "writer.log"
    with log.open("w") as stderr:
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(STEPS)], stderr=stderr)
    verified: set[int] = set()
    read_while_writing = 0
    analyses = []
    deadline = time.monotonic() + 300
    try:
        while True:
            assert time.monotonic() < deadline, f"the writer took too long ({len(verified)} steps read)"
            finished = (path / worker_finished_marker(0)).exists()  # before listing: then the listing is complete
            try:
                trial = Trial(path)
            except TrialError as error:
                assert "no such trial directory" in str(error) or "holds no step files" in str(error), error
                assert not finished
                time.sleep(0.005)
                continue
            # The newest file is the one a careless writer would still be writing: read it first, every time.
            newest = max(trial.files, key=lambda f: f.step)
            for step_file in (newest, *(f for f in trial.files if f.step not in verified and f != newest)):
                read_back(trial, step_file)  # raises on any torn, partial or invalid file
                read_while_writing += step_file.step not in verified and not finished
                verified.add(step_file.step)
            if not finished and len(trial.files) >= 10 and len(analyses) < 3 and len(verified) > 300 * len(analyses):
                # The command line, too, judges a trial being written without an error.
                result = subprocess.run(
                    ["poorinit", "analyze", str(path), "--format", "json"], capture_output=True, text=True, timeout=120
                )
                assert result.returncode in (0, 1), result.stderr
                analyses.append(json.loads(result.stdout)["steps"])
            if finished:
                break
    finally:
        writer.wait(timeout=300)
    assert writer.returncode == 0, log.read_text()
    assert verified == set(range(STEPS))
    assert sorted(p.name for p in path.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    # The reads really overlapped the writing (no timing is asserted, only that they interleaved).
    assert read_while_writing >= 100, read_while_writing
    assert all(steps == list(range(10)) for steps in analyses)
