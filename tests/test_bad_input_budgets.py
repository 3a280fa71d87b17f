"""Small files that describe enormous work: every one is refused or read in bounded time and memory.

A few kilobytes of HDF5 can spell 2^40 paths (groups hard-linking the next one
twice), nest 20,000 groups deep, hold 100,000 links, a gigabyte-sized chunk
that gzip shrank to a megabyte, a million one-value chunks, or a "loss" of two
billion values. Each test builds one such file inside an otherwise healthy
trial and runs the installed ``poorinit`` under a memory cap
(``resource.setrlimit`` in the child) and a time limit: exit 2 with the
documented one-line message naming the budget (docs/format.md, "Resource
budgets"), or a verdict, never a hang or an out-of-memory kill.
"""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from poorinit import StepFileError, Trial, TrialWriter
from poorinit.format import step_file_name

from .test_errors_doc import documented, expect_error, template_regex

MEMORY_CAP = 1 << 30  # 1 GiB of address space above what the interpreter maps at start
TIME_LIMIT = 120


def capped(*args: object) -> subprocess.CompletedProcess[str]:
    """``poorinit`` in a child whose address space is capped: a leak fails as an error, not a swap storm."""

    def limit() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = MEMORY_CAP + (2 << 30)  # the interpreter, numpy and HDF5 map about 1-2 GiB of address space
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))

    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, timeout=TIME_LIMIT,
                          preexec_fn=limit)


def trial_with(path: Path, build) -> Path:
    """A healthy six-step trial whose step 0 file also holds what ``build(tensors_group)`` adds."""
    rng = np.random.default_rng(0)
    with TrialWriter(path) as writer:
        for step in range(6):
            writer.write_step(
                step,
                activation_inputs={f"net.{i}.relu_input": rng.normal(0, 1, (16, 16)) for i in range(3)},
                gradients={"gradient/w": rng.normal(0, 0.05, (16, 16))},
                losses={"loss": 2.0 - 0.1 * step},
            )
    with h5py.File(path / step_file_name(0), "a") as f:
        build(f["tensors"])
    return path


def test_a_dag_of_hard_links_is_walked_once_per_group(tmp_path):
    """40 groups each hard-linking the next twice: 2^40 paths, 41 groups, read in an instant."""

    def dag(tensors):
        groups = [tensors.create_group(f"dag{i}") for i in range(41)]
        for upper, lower in zip(groups, groups[1:], strict=False):
            upper["left"] = lower
            upper["right"] = lower
        groups[-1]["leaf.relu_input"] = np.ones((4, 4))

    trial = trial_with(tmp_path / "t", dag)
    for command in (["analyze", trial], ["inspect", trial], ["scan", tmp_path, "--jobs", "1"]):
        result = capped(*command)
        assert result.returncode in (0, 1), result.stderr
    listed = Trial(trial).open(Trial(trial).files[0]).tensor_names()
    assert len([n for n, _ in listed if n.endswith("leaf.relu_input")]) == 1


def test_a_hard_link_cycle_is_still_refused(tmp_path):
    def cycle(tensors):
        inner = tensors.create_group("a/b")
        inner["again"] = tensors["a"]

    trial = trial_with(tmp_path / "t", cycle)
    expect_error(capped("analyze", trial), "tensor-link-cycle", "'a/b/again'")


def test_nesting_20000_groups_deep_is_refused(tmp_path):
    def deep(tensors):
        group = tensors
        for _ in range(20_000):
            group = group.create_group("n")

    trial = trial_with(tmp_path / "t", deep)
    expect_error(capped("analyze", trial), "tensor-too-deep", step_file_name(0))
    expect_error(capped("inspect", trial), "tensor-too-deep")


def test_100000_links_are_refused_before_any_is_opened(tmp_path):
    def many(tensors):
        target = tensors.create_dataset("many/x0", data=np.float32(1.0))
        group = tensors["many"]
        for i in range(1, 100_000):
            group[f"x{i}"] = target

    trial = trial_with(tmp_path / "t", many)
    expect_error(capped("analyze", trial), "step-too-many-links", step_file_name(0))


def test_more_tensors_than_the_budget_are_refused(tmp_path):
    def many(tensors):
        target = tensors.create_dataset("x0", data=np.float32(1.0))
        for group_index in range(4):
            group = tensors.create_group(f"g{group_index}")
            for i in range(5_000):
                group[f"x{i}"] = target

    trial = trial_with(tmp_path / "t", many)
    expect_error(capped("analyze", trial), "step-too-many-tensors", step_file_name(0))


def _compressed_chunks(tensors, name: str, chunk_values: int, chunks: int) -> None:
    """A float32 dataset of ``chunks`` gzip chunks of zeros, written precompressed (fast, tiny)."""
    dataset = tensors.create_dataset(name, shape=(chunk_values * chunks,), chunks=(chunk_values,), dtype="f4",
                                     compression="gzip")
    payload = zlib.compress(bytes(4 * chunk_values), 9)
    for index in range(chunks):
        dataset.id.write_direct_chunk((index * chunk_values,), payload)
    dataset.attrs["collections"] = "activation_inputs"


def test_one_huge_gzip_chunk_is_refused_unread(tmp_path):
    """A 64 MiB chunk of zeros is 64 KB compressed: refused from its layout before any is decompressed."""
    trial = trial_with(tmp_path / "t", lambda t: _compressed_chunks(t, "bomb.relu_input", 16 << 20, 1))
    assert (trial / step_file_name(0)).stat().st_size < 1 << 20
    expect_error(capped("analyze", trial), "tensor-chunk-too-large", "'bomb.relu_input'")


def test_many_gzip_chunks_past_the_expansion_budget_are_refused(tmp_path):
    """24 chunks of 16 MiB of zeros: 384 MiB from a file of about 400 KB."""
    trial = trial_with(tmp_path / "t", lambda t: _compressed_chunks(t, "bomb.relu_input", 4 << 20, 24))
    expect_error(capped("analyze", trial), "tensor-expansion-budget", "'bomb.relu_input'")


def test_a_million_one_value_chunks_are_refused_from_the_layout(tmp_path):
    def tiny_chunks(tensors):
        dataset = tensors.create_dataset("tiny.relu_input", shape=(1_000_000,), chunks=(1,), dtype="f4")
        dataset.attrs["collections"] = "activation_inputs"

    trial = trial_with(tmp_path / "t", tiny_chunks)
    expect_error(capped("analyze", trial), "tensor-too-many-chunks", "'tiny.relu_input'")


def test_a_loss_of_two_billion_values_is_refused_unread(tmp_path):
    def huge_loss(tensors):
        del tensors["loss"]
        _compressed_chunks(tensors, "loss", 4 << 20, 1)
        tensors["loss"].attrs["collections"] = "losses"

    trial = trial_with(tmp_path / "t", huge_loss)
    result = capped("analyze", trial)
    expect_error(result, "loss-not-scalar", "'loss'")


def test_a_missing_hdf5_filter_is_named(tmp_path):
    """A dataset compressed with a filter this HDF5 lacks (here an unregistered id) names the filter."""

    def foreign(tensors):
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((16,))
        dcpl.set_filter(32008, h5py.h5z.FLAG_OPTIONAL, ())  # bitshuffle's id, not installed here
        space = h5py.h5s.create_simple((64,))
        h5py.h5d.create(tensors.id, b"foreign.relu_input", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)

    if h5py.h5z.filter_avail(32008):
        pytest.skip("the bitshuffle filter is installed here")
    trial = trial_with(tmp_path / "t", foreign)
    message = expect_error(capped("analyze", trial), "tensor-filter-missing", "'foreign.relu_input'")
    assert "id 32008" in message


def test_a_step_file_swapped_for_a_fifo_after_listing_is_refused_at_once(tmp_path):
    """Opened without blocking and judged by fstat of what was opened: no hang on a FIFO."""
    trial = trial_with(tmp_path / "t", lambda t: None)
    listed = Trial(trial)
    step = listed.files[0].path
    step.unlink()
    os.mkfifo(step)
    assert stat.S_ISFIFO(step.stat().st_mode)
    with pytest.raises(StepFileError, match="is not a regular file"):
        listed.open(listed.files[0])


def test_a_file_changed_while_it_is_read_is_refused(tmp_path):
    """A writer rewriting in place: the size or time differs between open and the end of reading."""
    trial = trial_with(tmp_path / "t", lambda t: None)
    listed = Trial(trial)
    reader = listed.open(listed.files[0])
    reader.tensor_names()
    reader.check_unchanged()  # nothing changed yet
    with open(listed.files[0].path, "ab") as handle:
        handle.write(b"\0" * 512)
    with pytest.raises(StepFileError) as raised:
        reader.check_unchanged()
    reader.close()
    assert template_regex(documented()["step-changed-while-read"]).fullmatch(str(raised.value))
