"""Bad input, faults and hostile files: a clear answer every time, never a wrong verdict.

Each test builds one broken or unusual trial in ``tmp_path`` and runs the
installed ``poorinit analyze`` in a real subprocess. An input that cannot be
analysed must give exit 2 and the one-line message that docs/errors.md
documents under the id passed to :func:`expect_error`, naming the file (and
tensor); odd values that are data (NaN, zeros, a single element) must give a
verdict whose criteria say what they saw.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from poorinit import TrialWriter
from poorinit.format import step_file_name

from .conftest import write_synthetic_trial
from .test_errors_doc import documented, expect_error, run, template_regex


def step_path(trial: Path, step: int = 0, mode: str = "train", worker: int = 0) -> Path:
    return trial / step_file_name(step, mode, worker)


def small_trial(path: Path, steps: int = 10, **kwargs) -> Path:
    return write_synthetic_trial(path, layers=3, steps=steps, **kwargs)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def edit(path: Path):
    """Open a step file for editing, keeping the checksummed format of the writer."""
    return h5py.File(path, "a", libver="v110")


def replace_tensor(path: Path, name: str, collections: str | None, **create) -> None:
    with edit(path) as f:
        if name in f["tensors"]:
            del f["tensors"][name]
        dataset = f["tensors"].create_dataset(name, **create)
        if collections is not None:
            dataset.attrs["collections"] = collections


def verdict(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    return {c["check"]: c for c in document["criteria"]} | {"": document}


def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root ignores them)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be denied")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]


def run_unprivileged(*args: object) -> subprocess.CompletedProcess[str]:
    command = [*unprivileged(), shutil.which("poorinit") or "poorinit", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


# -- the path ------------------------------------------------------------------


def test_a_missing_path(tmp_path):
    expect_error(run("analyze", tmp_path / "nope"), "trial-missing", tmp_path / "nope")


def test_a_broken_symbolic_link_as_trial(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    expect_error(run("analyze", tmp_path / "link"), "trial-broken-link", tmp_path / "link", tmp_path / "gone")


def test_a_file_instead_of_a_directory(tmp_path):
    trial = small_trial(tmp_path / "t", steps=1)
    expect_error(run("analyze", step_path(trial)), "trial-not-directory", step_path(trial))


def test_an_empty_directory(tmp_path):
    expect_error(run("analyze", tmp_path), "trial-no-step-files", tmp_path)


def test_a_directory_without_step_files_says_what_it_holds(tmp_path):
    small_trial(tmp_path / "run-a", steps=1)
    (tmp_path / "model.h5").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    message = expect_error(run("analyze", tmp_path), "trial-no-step-files", tmp_path)
    assert "trials found inside: run-a" in message and "model.h5" in message


def test_a_directory_with_only_a_crashed_writers_temporary_file(tmp_path):
    (tmp_path / f".{step_file_name(0)}.123.abcd.tmp").write_bytes(b"\x89HDF")
    message = expect_error(run("analyze", tmp_path), "trial-no-step-files")
    assert "temporary files of a writer that has not finished or crashed" in message


def test_a_symbolic_link_loop_as_trial(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    message = expect_error(run("analyze", tmp_path / "a"), "trial-unlistable", tmp_path / "a")
    assert "symbolic links" in message


def test_a_directory_that_cannot_be_listed(tmp_path):
    trial = small_trial(tmp_path / "t", steps=1)
    trial.chmod(0o300)
    try:
        # The CLI leaves the check to poorinit, whose message says what to do.
        expect_error(run_unprivileged("analyze", trial), "trial-permission", trial, "permission denied while listing")
        # The library names it the same way, for the Python API and scans.
        command = [*unprivileged(), sys.executable, "-c", "import sys, poorinit; poorinit.Trial(sys.argv[1])", trial]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("poorinit.errors.TrialError: ")
        assert template_regex(documented()["trial-permission"]).fullmatch(last.split(": ", 1)[1])
    finally:
        trial.chmod(0o755)


def test_a_directory_that_cannot_be_entered(tmp_path):
    trial = small_trial(tmp_path / "parent" / "t", steps=1)
    trial.parent.chmod(0o600)
    try:
        expect_error(run_unprivileged("analyze", trial), "trial-no-access", trial)
    finally:
        trial.parent.chmod(0o755)


def test_permission_denied_on_a_step_file(tmp_path):
    trial = small_trial(tmp_path / "t")
    step_path(trial, 4).chmod(0)
    expect_error(run_unprivileged("analyze", trial), "step-permission", step_path(trial, 4))


# -- damaged step files --------------------------------------------------------


def test_a_truncated_step_file(tmp_path):
    trial = small_trial(tmp_path / "t")
    target = step_path(trial, 3)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    message = expect_error(run("analyze", trial), "step-truncated", target)
    assert f"({len(data) // 2} of {len(data)} bytes)" in message


def test_a_zero_byte_step_file(tmp_path):
    trial = small_trial(tmp_path / "t")
    step_path(trial, 2).write_bytes(b"")
    expect_error(run("analyze", trial), "step-empty", step_path(trial, 2))


def test_a_step_file_that_is_not_hdf5(tmp_path):
    trial = small_trial(tmp_path / "t")
    step_path(trial, 0).write_text("step,loss\n0,0.69\n")
    expect_error(run("analyze", trial), "step-not-hdf5", step_path(trial, 0))


def test_a_flipped_byte_in_a_tensors_data(tmp_path):
    trial = small_trial(tmp_path / "t")
    target = step_path(trial, 5)
    gradient = np.random.default_rng(0).normal(0, 0.05, (128, 128)).astype(np.float32)
    TrialWriter(trial).write_step(5, gradients={"gradient/net.0.weight": gradient}, losses={"loss": 1.5})
    with h5py.File(target) as f:  # larger than 8 KiB: chunked, each chunk under fletcher32
        offset = f["tensors/gradient/net.0.weight"].id.get_chunk_info(0).byte_offset
    flip_byte(target, offset + 17)
    expect_error(run("analyze", trial), "tensor-unreadable", target, "'gradient/net.0.weight'")


def test_a_flipped_byte_in_a_small_tensor_stored_in_its_header(tmp_path):
    trial = small_trial(tmp_path / "t")
    target = step_path(trial, 5)
    with h5py.File(target) as f:  # the loss is compact: its value sits in the checksummed header
        address = h5py.h5o.get_info(f["tensors/loss"].id).addr
    flip_byte(target, address + 40)
    expect_error(run("analyze", trial), "tensor-unreadable", target, "'loss'")


def test_a_flipped_byte_in_the_root_group_header(tmp_path):
    trial = small_trial(tmp_path / "t")
    target = step_path(trial, 1)
    with h5py.File(target) as f:
        address = h5py.h5o.get_info(f.id).addr
    flip_byte(target, address + 20)
    expect_error(run("analyze", trial), "step-damaged", target, "checksum")


def test_a_flipped_byte_in_the_superblock(tmp_path):
    trial = small_trial(tmp_path / "t")
    flip_byte(step_path(trial, 1), 20)
    expect_error(run("analyze", trial), "step-unreadable-hdf5", step_path(trial, 1))


def test_a_step_file_left_open_by_a_crashed_writer(tmp_path):
    """What a writer that writes in place leaves when it dies: HDF5's "open for writing" flag is set."""
    trial = small_trial(tmp_path / "t")
    target = step_path(trial, 4)
    with h5py.File(target, "a", libver="v110") as f:
        f.flush()
        snapshot = target.read_bytes()
    target.write_bytes(snapshot)
    expect_error(run("analyze", trial), "step-open-for-writing", target)


def test_damage_outside_the_analysed_steps_is_not_opened(tmp_path):
    trial = small_trial(tmp_path / "t", steps=12)
    step_path(trial, 11).write_bytes(b"garbage")
    assert verdict(run("analyze", trial, "--format", "json"))[""]["status"] == "passed"


def test_damage_in_one_workers_file_names_that_file(tmp_path):
    trial = write_synthetic_trial(tmp_path / "t", layers=3, steps=6, workers=2)
    step_path(trial, 2, worker=1).write_bytes(step_path(trial, 2, worker=1).read_bytes()[:1000])
    expect_error(run("analyze", trial), "step-truncated", step_path(trial, 2, worker=1))


def test_a_broken_symbolic_link_as_step_file(tmp_path):
    """git-annex and DVC leave links whose data is not fetched: never skipped in silence."""
    trial = small_trial(tmp_path / "t")
    step_path(trial, 6).unlink()
    step_path(trial, 6).symlink_to(tmp_path / ".git" / "annex" / "objects" / "xx")
    expect_error(run("analyze", trial), "step-broken-link", step_path(trial, 6))


def test_a_directory_named_like_a_step_file(tmp_path):
    trial = small_trial(tmp_path / "t")
    step_path(trial, 3).unlink()
    step_path(trial, 3).mkdir()
    expect_error(run("analyze", trial), "step-not-regular", step_path(trial, 3))


def test_a_step_file_that_is_a_symbolic_link_loop(tmp_path):
    trial = small_trial(tmp_path / "t")
    step_path(trial, 3).unlink()
    step_path(trial, 3).symlink_to(step_path(trial, 3))
    expect_error(run("analyze", trial), "step-unreadable", step_path(trial, 3))


# -- the format's attributes ---------------------------------------------------


def test_a_newer_format_version(tmp_path):
    trial = small_trial(tmp_path / "t")
    with edit(step_path(trial, 0)) as f:
        f.attrs["poorinit_format"] = 2
    expect_error(run("analyze", trial), "step-format-newer", step_path(trial, 0))


@pytest.mark.parametrize("version", [0, "1", True])
def test_an_invalid_format_version(tmp_path, version):
    trial = small_trial(tmp_path / "t")
    with edit(step_path(trial, 0)) as f:
        f.attrs["poorinit_format"] = version
    expect_error(run("analyze", trial), "step-format-invalid", step_path(trial, 0))


def test_an_hdf5_file_of_another_tool(tmp_path):
    with h5py.File(tmp_path / step_file_name(0), "w") as f:
        f["data"] = np.ones(3)
    expect_error(run("analyze", tmp_path), "step-not-poorinit", step_path(tmp_path))


@pytest.mark.parametrize("attribute", ["step", "mode", "worker"])
def test_a_missing_required_attribute(tmp_path, attribute):
    trial = small_trial(tmp_path / "t")
    with edit(step_path(trial, 0)) as f:
        del f.attrs[attribute]
    message = expect_error(run("analyze", trial), "step-missing-attribute", step_path(trial, 0))
    assert f"'{attribute}'" in message


def test_an_attribute_that_cannot_be_read(tmp_path):
    """Plain h5py keeps a string attribute in the global heap, which has no checksum: damage shows on reading."""
    target = tmp_path / step_file_name(0)
    with h5py.File(target, "w") as f:
        f.attrs.update({"poorinit_format": 1, "step": 0, "mode": "train", "worker": 0})
        f.create_dataset("tensors/loss", data=1.0).attrs["collections"] = "losses"
    data = target.read_bytes()
    target.write_bytes(data.replace(b"GCOL", b"XCOL", 1))
    expect_error(run("analyze", tmp_path), "step-unreadable-attribute", target, "'mode'", "global heap")


def test_a_step_number_that_disagrees_with_the_name(tmp_path):
    trial = small_trial(tmp_path / "t")
    step_path(trial, 9).rename(step_path(trial, 10))
    step_path(trial, 3).rename(step_path(trial, 9))
    message = expect_error(run("analyze", trial), "step-name-mismatch", step_path(trial, 9))
    assert "step=3" in message


def test_a_mode_that_disagrees_with_the_name(tmp_path):
    trial = small_trial(tmp_path / "t")
    step_path(trial, 0).rename(step_path(trial, 0, "eval"))
    expect_error(run("analyze", trial, "--mode", "eval"), "step-name-mismatch", "mode='train'")


def test_two_files_for_the_same_step_mode_and_worker(tmp_path):
    trial = small_trial(tmp_path / "t")
    shutil.copy(step_path(trial, 3), trial / "3_train_0.h5")
    message = expect_error(run("analyze", trial), "trial-duplicate-step", step_path(trial, 3).name)
    assert "3_train_0.h5" in message


def test_no_tensors_group(tmp_path):
    trial = small_trial(tmp_path / "t")
    with edit(step_path(trial, 0)) as f:
        del f["tensors"]
        f["tensors"] = np.zeros(3)
    message = expect_error(run("analyze", trial), "step-no-tensors", step_path(trial, 0))
    assert "found a dataset" in message


def test_the_tensors_group_as_a_soft_link(tmp_path):
    trial = small_trial(tmp_path / "t")
    with edit(step_path(trial, 0)) as f:
        f.move("tensors", "elsewhere")
        f["tensors"] = h5py.SoftLink("/elsewhere")
    expect_error(run("analyze", trial), "step-tensors-link", step_path(trial, 0))


def test_a_mode_the_trial_does_not_have(tmp_path):
    trial = small_trial(tmp_path / "t")
    expect_error(run("analyze", trial, "--mode", "eval"), "mode-absent", trial, "modes present: train")


# -- tensors -------------------------------------------------------------------


def test_nan_in_an_activation_input_fires_the_criterion(tmp_path):
    trial = small_trial(tmp_path / "t")
    values = np.ones((64, 32), np.float32)
    values[3, 4] = np.nan
    replace_tensor(step_path(trial, 2), "net.2.relu_input", "activation_inputs", data=values)
    criteria = verdict(run("analyze", trial, "--format", "json"))
    assert criteria["activation_variance"]["status"] == "fired"
    assert "non-finite" in criteria["activation_variance"]["reason"]
    assert criteria["activation_variance"]["tensor"] == "net.2.relu_input"


def test_inf_in_a_gradient_fires_the_criterion(tmp_path):
    trial = small_trial(tmp_path / "t")
    values = np.full((32, 32), 0.1, np.float32)
    values[0, 0] = np.inf
    replace_tensor(step_path(trial, 7), "gradient/net.0.weight", "gradients", data=values)
    criteria = verdict(run("analyze", trial, "--format", "json"))
    assert criteria["gradient_spread"]["status"] == "fired" and criteria["gradient_spread"]["step"] == 7


def test_a_nan_loss_fires_the_criterion(tmp_path):
    trial = small_trial(tmp_path / "t")
    replace_tensor(step_path(trial, 4), "loss", "losses", data=np.float64("nan"))
    criteria = verdict(run("analyze", trial, "--format", "json"))
    assert criteria["loss_decrease"]["status"] == "fired" and "diverged" in criteria["loss_decrease"]["reason"]


def test_all_zero_tensors_fire(tmp_path):
    trial = small_trial(tmp_path / "t", layer_scale=lambda i: 0.0, gradient_scale=0.0)
    criteria = verdict(run("analyze", trial, "--format", "json"))
    assert criteria["activation_variance"]["status"] == "fired"
    assert criteria["gradient_spread"]["status"] == "fired"


def test_single_element_and_scalar_activation_inputs_are_not_a_variance(tmp_path):
    trial = tmp_path / "t"
    with TrialWriter(trial) as writer:
        for step in range(10):
            writer.write_step(
                step,
                activation_inputs={"net.0.relu_input": np.ones(1, np.float32), "net.2.relu_input": np.float32(2)},
                gradients={"g": np.random.default_rng(step).normal(0, 0.1, 100)},
                losses={"loss": 1.0 - 0.05 * step},
            )
    criteria = verdict(run("analyze", trial, "--format", "json"))
    assert criteria["activation_variance"]["status"] == "not_applicable"
    assert "at least two activation-input layers with 2+ values" in criteria["activation_variance"]["reason"]
    assert criteria["gradient_spread"]["status"] == "passed"


def test_a_zero_size_tensor_contributes_nothing(tmp_path):
    trial = small_trial(tmp_path / "t")
    replace_tensor(step_path(trial, 0), "gradient/empty", "gradients", data=np.zeros((0, 5), np.float32))
    assert verdict(run("analyze", trial, "--format", "json"))[""]["status"] == "passed"


def test_a_zero_size_loss(tmp_path):
    trial = small_trial(tmp_path / "t")
    replace_tensor(step_path(trial, 1), "loss", "losses", data=np.zeros(0))
    expect_error(run("analyze", trial), "loss-not-scalar", step_path(trial, 1), "'loss'", "(0,)")


@pytest.mark.parametrize(
    "data, kind",
    [
        (np.arange(64, dtype=np.int32).reshape(8, 8), "integer"),
        (np.ones((8, 8), dtype=bool), "boolean"),
        (np.array(["naïve"], dtype=h5py.string_dtype()), "string or object"),
        (np.zeros(4, dtype=[("re", "f4"), ("im", "f4")]), "compound"),
        (np.ones(4, dtype=np.complex64), "complex"),
        (np.random.default_rng(0).normal(0, 0.05, (32, 32)).astype(">f4"), None),
    ],
)
def test_a_tensor_of_another_dtype(tmp_path, data, kind):
    trial = small_trial(tmp_path / "t")
    replace_tensor(step_path(trial, 0), "gradient/net.0.weight", "gradients", data=data)
    result = run("analyze", trial)
    if kind is None:  # big-endian float32 is a format dtype like any float
        assert result.returncode == 0, result.stderr
        return
    message = expect_error(result, "tensor-dtype", step_path(trial, 0), "'gradient/net.0.weight'")
    assert f"({kind})" in message


def test_a_tensor_of_another_dtype_is_not_read_when_no_criterion_selects_it(tmp_path):
    trial = small_trial(tmp_path / "t")
    replace_tensor(step_path(trial, 0), "labels", "targets", data=np.arange(10))
    assert verdict(run("analyze", trial, "--format", "json"))[""]["status"] == "passed"


def test_a_dataset_without_a_dataspace(tmp_path):
    trial = small_trial(tmp_path / "t")
    replace_tensor(step_path(trial, 0), "gradient/net.0.weight", "gradients", data=h5py.Empty("f4"))
    expect_error(run("analyze", trial), "tensor-no-dataspace", step_path(trial, 0))


@pytest.mark.parametrize(
    "layout, unit",
    [
        ({}, "bytes"),
        ({"chunks": (1 << 16,)}, "chunks"),
        ({"chunks": (1 << 16,), "compression": "gzip", "shuffle": True}, "chunks"),
    ],
)
def test_a_1gb_shape_claimed_by_a_tiny_file(tmp_path, layout, unit):
    """Chunks never written read as zeros: refused, whatever the filters, not judged as a dead network."""
    trial = small_trial(tmp_path / "t")
    target = step_path(trial, 0)
    replace_tensor(target, "gradient/net.0.weight", "gradients", shape=(1 << 28,), dtype="f4", **layout)
    assert target.stat().st_size < 1 << 20
    message = expect_error(run("analyze", trial), "tensor-short-storage", target, "(268435456,)")
    assert message.endswith(
        f"stores only 0 of its {1 << 30 if unit == 'bytes' else 4096} {unit} "
        "(never written, truncated or forged); rewrite the step"
    )


def test_a_chunked_tensor_with_one_chunk_missing(tmp_path):
    trial = small_trial(tmp_path / "t")
    target = step_path(trial, 0)
    replace_tensor(
        target, "gradient/net.0.weight", "gradients", shape=(1000,), dtype="f4", chunks=(100,), compression="gzip"
    )
    with edit(target) as f:
        f["tensors/gradient/net.0.weight"][:900] = np.random.default_rng(0).normal(size=900)
    expect_error(run("analyze", trial), "tensor-short-storage", "stores only 9 of its 10 chunks")


# -- steps ---------------------------------------------------------------------


def test_loss_missing_for_some_steps(tmp_path):
    trial = small_trial(tmp_path / "t")
    for step in (2, 5):
        with edit(step_path(trial, step)) as f:
            del f["tensors/loss"]
    criteria = verdict(run("analyze", trial, "--format", "json"))
    loss = criteria["loss_decrease"]
    assert loss["status"] == "passed"
    assert [step for step, _ in loss["per_step"]] == [0, 1, 3, 4, 6, 7, 8, 9]


def test_too_few_loss_values_make_the_loss_criterion_not_applicable(tmp_path):
    trial = small_trial(tmp_path / "t")
    for step in range(1, 10):
        with edit(step_path(trial, step)) as f:
            del f["tensors/loss"]
    criteria = verdict(run("analyze", trial, "--format", "json"))
    assert criteria["loss_decrease"]["status"] == "not_applicable"
    assert "found 1" in criteria["loss_decrease"]["reason"]


def test_steps_with_gaps_are_analysed_with_a_warning(tmp_path):
    trial = small_trial(tmp_path / "t", steps=14)
    for step in (3, 4, 8):
        step_path(trial, step).unlink()
    document = verdict(run("analyze", trial, "--format", "json"))[""]
    assert document["steps"] == [0, 1, 2, 5, 6, 7, 9, 10, 11, 12]
    assert "steps missing from the trial: 3-4, 8" in document["warnings"]


def test_fewer_steps_than_asked_are_analysed_with_a_warning(tmp_path):
    trial = small_trial(tmp_path / "t", steps=7)
    document = verdict(run("analyze", trial, "--format", "json"))[""]
    assert document["steps"] == list(range(7))
    assert "analysed 7 of steps=10 steps: the trial has no more" in document["warnings"]


# -- regexes -------------------------------------------------------------------


def test_a_regex_that_does_not_compile(tmp_path):
    trial = small_trial(tmp_path / "t")
    message = expect_error(run("analyze", trial, "--activation-inputs-regex", "net.[0-9"), "parameter-regex")
    assert message.startswith("activation_inputs_regex: 'net.[0-9'")


def test_a_regex_that_matches_nothing(tmp_path):
    trial = small_trial(tmp_path / "t")
    criteria = verdict(run("analyze", trial, "--activation-inputs-regex", "conv.*", "--format", "json"))
    assert criteria["activation_variance"]["status"] == "not_applicable"
    assert "no tensor matched regex 'conv.*'" in criteria["activation_variance"]["reason"]


def test_regexes_that_match_nothing_at_all(tmp_path):
    trial = small_trial(tmp_path / "t")
    args = ["--activation-inputs-regex", "x", "--gradient-regex", "x", "--loss-regex", "x"]
    message = expect_error(run("analyze", trial, *args), "nothing-to-analyse", trial)
    assert "the analysed steps hold: gradient/net.0.weight" in message


def test_a_regex_that_matches_tensors_of_the_wrong_collection(tmp_path):
    trial = small_trial(tmp_path / "t")
    criteria = verdict(run("analyze", trial, "--gradient-regex", "net\\.", "--format", "json"))
    gradient = criteria["gradient_spread"]
    assert gradient["status"] == "not_applicable"
    assert "marked as another collection: net.0.relu_input, net.0.weight" in gradient["reason"]


# -- links and storage outside the file ------------------------------------------


def test_an_external_link_is_never_followed(tmp_path):
    trial = small_trial(tmp_path / "t")
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f["x"] = np.ones((64, 32), np.float32)
    with edit(step_path(trial, 0)) as f:
        f["tensors/net.9.relu_input"] = h5py.ExternalLink(str(outside), "/x")
    expect_error(run("analyze", trial), "tensor-external-link", step_path(trial, 0), outside)


def test_external_raw_storage_is_never_followed(tmp_path):
    trial = small_trial(tmp_path / "t")
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.ones(64 * 32, np.float32).tobytes())
    replace_tensor(
        step_path(trial, 0),
        "net.0.relu_input",
        "activation_inputs",
        shape=(64, 32),
        dtype="f4",
        external=[(str(raw), 0, 64 * 32 * 4)],
    )
    expect_error(run("analyze", trial), "tensor-external-storage", step_path(trial, 0), raw)


def test_a_virtual_dataset_is_never_followed(tmp_path):
    trial = small_trial(tmp_path / "t")
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as f:
        f["x"] = np.ones((64, 32), np.float32)
    layout = h5py.VirtualLayout(shape=(64, 32), dtype="f4")
    layout[:] = h5py.VirtualSource(str(source), "x", shape=(64, 32))
    with edit(step_path(trial, 0)) as f:
        del f["tensors/net.0.relu_input"]
        f["tensors"].create_virtual_dataset("net.0.relu_input", layout).attrs["collections"] = "activation_inputs"
    expect_error(run("analyze", trial), "tensor-virtual", step_path(trial, 0), "'net.0.relu_input'")


def test_soft_links_that_loop(tmp_path):
    trial = small_trial(tmp_path / "t")
    with edit(step_path(trial, 0)) as f:
        f["tensors/a"] = h5py.SoftLink("/tensors/b")
        f["tensors/b"] = h5py.SoftLink("/tensors/a")
    expect_error(run("analyze", trial), "tensor-soft-link", step_path(trial, 0), "'a'")


def test_a_group_hard_linked_into_itself(tmp_path):
    trial = small_trial(tmp_path / "t")
    with edit(step_path(trial, 0)) as f:
        f["tensors/gradient/again"] = f["tensors/gradient"]
    expect_error(run("analyze", trial), "tensor-link-cycle", step_path(trial, 0), "'gradient/again'")


# -- names and paths -------------------------------------------------------------


def test_names_with_spaces_and_unicode(tmp_path):
    trial = tmp_path / "runs with spaces" / "essai ünïcødé 训练"
    with TrialWriter(trial) as writer:
        rng = np.random.default_rng(0)
        for step in range(10):
            writer.write_step(
                step,
                activation_inputs={f"couche {i} ü.relu_input": rng.normal(size=(16, 8)) for i in range(3)},
                gradients={f"gradient/poids é {i}": rng.normal(0, 0.1, (16, 8)) for i in range(3)},
                losses={"perte ∑": 2.0 - 0.1 * step},
            )
    criteria = verdict(run("analyze", trial, "--format", "json"))
    assert criteria[""]["trial"] == str(trial) and criteria[""]["status"] == "passed"
    assert criteria["loss_decrease"]["tensor"] == "perte ∑"
    step_path(trial, 3).write_bytes(b"")
    expect_error(run("analyze", trial), "step-empty", step_path(trial, 3))


def test_a_very_long_path(tmp_path):
    trial = tmp_path.joinpath(*[f"{i:02d}" + "d" * 200 for i in range(15)])
    assert len(str(trial)) > 3000
    small_trial(trial)
    assert verdict(run("analyze", trial, "--format", "json"))[""]["status"] == "passed"
    step_path(trial, 3).write_bytes(b"x")
    expect_error(run("analyze", trial), "step-not-hdf5", step_path(trial, 3))


def test_a_trial_reached_through_symbolic_links(tmp_path):
    trial = small_trial(tmp_path / "store" / "trial")
    (tmp_path / "runs").symlink_to(tmp_path / "store")
    (tmp_path / "latest").symlink_to(tmp_path / "runs" / "trial")
    direct = verdict(run("analyze", trial, "--format", "json"))
    linked = verdict(run("analyze", tmp_path / "latest", "--format", "json"))
    assert linked[""]["trial"] == str(tmp_path / "latest")
    assert linked[""]["criteria"] == direct[""]["criteria"]


def test_a_path_with_a_newline_still_gives_one_line(tmp_path):
    trial = tmp_path / "two\nlines"
    expect_error(run("analyze", trial), "trial-missing")
