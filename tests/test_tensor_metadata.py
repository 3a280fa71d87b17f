"""Reading the optional tensor metadata (docs/format.md, format v1).

The recorder may describe an activation input (its kind, what came before it,
its place in the forward pass) and the trial (``num_classes``). The attributes
are optional: a trial written without them reads exactly as before, and one the
reader cannot decode is left out rather than refusing values that are fine.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from poorinit import TrialWriter
from poorinit.trial import ArrayTensor, Trial


def _step_with_metadata(path: Path) -> Path:
    with TrialWriter(path, fsync=False) as writer:
        step_file = writer.write_step(
            0,
            activation_inputs={"blocks.0.gelu_input": np.ones((4, 3), np.float32)},
            weights={"blocks.0.fc.weight": np.ones((3, 3))},
            losses={"loss": 1.2},
        )
    with h5py.File(step_file, "a") as f:
        f.attrs["num_classes"] = 4
        ds = f["tensors/blocks.0.gelu_input"]
        ds.attrs["activation"] = "gelu"
        ds.attrs["order"] = np.int64(2)
        ds.attrs["after"] = np.bytes_(b"LayerNorm")
        ds.attrs["negative_slope"] = np.float32(0.5)
        ds.attrs["flags"] = np.array([1, 2, 3])
        f["tensors/blocks.0.fc.weight"].attrs["module"] = "Linear"
    return path


def test_dataset_attributes_read_as_plain_python_values(tmp_path: Path) -> None:
    trial = Trial(_step_with_metadata(tmp_path / "t"))
    with trial.open(trial.step_files(0)[0]) as reader:
        reader.tensor_names()
        attrs = dict(reader.tensor("blocks.0.gelu_input").attrs)
        assert attrs == {"activation": "gelu", "order": 2, "after": "LayerNorm", "negative_slope": 0.5,
                         "flags": [1, 2, 3]}
        assert type(attrs["order"]) is int and type(attrs["negative_slope"]) is float
        assert "collections" not in attrs  # the reader's own attribute is not metadata
        assert reader.tensor("blocks.0.fc.weight").attrs == {"module": "Linear"}


def test_root_attributes_include_num_classes(tmp_path: Path) -> None:
    trial = Trial(_step_with_metadata(tmp_path / "t"))
    with trial.open(trial.step_files(0)[0]) as reader:
        assert reader.attrs["num_classes"] == 4
        assert reader.attrs["step"] == 0 and reader.attrs["mode"] == "train"


def test_a_trial_without_metadata_reads_empty_attributes(tmp_path: Path) -> None:
    with TrialWriter(tmp_path / "old", fsync=False) as writer:
        writer.write_step(0, activation_inputs={"a.relu_input": np.ones(5)}, losses={"loss": 1.0})
    trial = Trial(tmp_path / "old")
    with trial.open(trial.step_files(0)[0]) as reader:
        reader.tensor_names()
        assert reader.tensor("a.relu_input").attrs == {}
        assert "num_classes" not in reader.attrs


def test_in_memory_tensors_carry_attributes_too() -> None:
    assert ArrayTensor("a", np.zeros(3)).attrs == {}
    assert ArrayTensor("a", np.zeros(3), attrs={"after": "BatchNorm1d"}).attrs["after"] == "BatchNorm1d"
