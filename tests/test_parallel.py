"""One `analyze` on both cores: steps measured on two threads give the verdict
of a serial run, to the last bit, and fail as a serial run fails."""

import threading

import numpy as np
import pytest

from poorinit import TrialWriter
from poorinit.analysis import analysis_threads, evaluate
from poorinit.errors import PoorinitError, StepFileError
from poorinit.format import step_file_name
from poorinit.params import RuleParams
from poorinit.stats import KEPT_BYTES, percentile_spread
from poorinit.trial import Trial

from .conftest import write_synthetic_trial


def verdict(trial, threads):
    return evaluate(Trial(trial), RuleParams.from_values(), threads=threads)


def test_two_threads_give_the_serial_verdict_to_the_last_bit(tmp_path):
    trial = write_synthetic_trial(tmp_path / "t", layers=5, steps=10, workers=2)
    assert verdict(trial, 2) == verdict(trial, 1)


def test_a_vanishing_trial_fires_the_same_on_two_threads(tmp_path):
    trial = write_synthetic_trial(tmp_path / "t", layers=4, steps=8, layer_scale=lambda i: 0.1**i,
                                  gradient_scale=1e-6)
    serial, parallel = verdict(trial, 1), verdict(trial, 2)
    assert parallel == serial and parallel.fired


def test_the_first_damaged_step_in_step_order_is_reported(tmp_path):
    # Steps 3 and 6 are damaged: whichever thread fails first, a serial run
    # reports step 3, and so must a parallel one.
    trial = write_synthetic_trial(tmp_path / "t", steps=10)
    for step in (3, 6):
        (trial / step_file_name(step)).write_bytes(b"not HDF5 at all")
    for threads in (1, 2):
        with pytest.raises(StepFileError) as error:
            verdict(trial, threads)
        assert step_file_name(3) in str(error.value)


def test_small_trials_stay_on_one_thread_large_ones_use_the_cores(tmp_path):
    small = Trial(write_synthetic_trial(tmp_path / "small", steps=4))
    params = RuleParams.from_values()
    assert analysis_threads(small, params, small.steps()) == 1
    big = tmp_path / "big"
    rng = np.random.default_rng(0)
    with TrialWriter(big) as writer:
        for step in range(2):
            writer.write_step(step, gradients={"gradient/w": rng.standard_normal(5 << 20, dtype=np.float32)})
    trial = Trial(big)
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert analysis_threads(trial, params, trial.steps()) == min(2, cores or 1)


def test_percentiles_on_threads_sharing_the_kept_memory_stay_exact():
    # Two samples of KEPT_BYTES / 2 + a bit each: both cannot keep their blocks
    # in the shared arena at once, so one of them reads its source again.
    n = KEPT_BYTES // 4 // 2 + 1000
    rng = np.random.default_rng(5)
    samples = [rng.standard_normal(n, dtype=np.float32) * np.float32(scale) for scale in (0.01, 3.0)]
    expected = [tuple(np.percentile(s.astype(np.float64), [5, 95])) for s in samples]

    class Source:
        def __init__(self, values):
            self.values, self.passes = values, 0

        def __iter__(self):
            self.passes += 1
            yield from np.array_split(self.values, 16)

    sources = [Source(s) for s in samples]
    results: dict[int, tuple[float, float]] = {}
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(index):
        try:
            barrier.wait()
            spread = percentile_spread(sources[index])
            results[index] = (spread.low, spread.high)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [results[0], results[1]] == expected
    assert sorted(source.passes for source in sources) == [1, 2], [s.passes for s in sources]


def test_errors_of_a_parallel_run_are_poorinit_errors(tmp_path):
    trial = write_synthetic_trial(tmp_path / "t", steps=6)
    (trial / step_file_name(5)).write_bytes(b"")
    with pytest.raises(PoorinitError, match="is empty"):
        verdict(trial, 2)
