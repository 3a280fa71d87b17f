"""The format round trip: what TrialWriter writes, Trial reads back."""

import os

import h5py
import numpy as np
import pytest

from poorinit import StepFileError, TensorError, Trial, TrialError, TrialWriter
from poorinit import format as fmt
from poorinit.format import FINISHED_MARKER, step_file_name, worker_finished_marker
from poorinit.writer import chunk_shape


def test_file_names_sort_in_step_order(tmp_path):
    with TrialWriter(tmp_path) as w:
        for step in (10, 2, 100):
            w.write_step(step, losses={"loss": 1.0})
    names = sorted(p.name for p in tmp_path.glob("*.h5"))
    assert names == [step_file_name(2), step_file_name(10), step_file_name(100)]
    assert names[0] == "000000000002_train_0.h5"


def test_round_trip_keeps_values_collections_and_attributes(tmp_path):
    activation = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    with TrialWriter(tmp_path, mode="eval", worker=3) as w:
        w.write_step(
            7,
            activation_inputs={"block/fc1.relu_input": activation},
            losses={"loss": 0.5},
            tensors={"custom": (np.ones(3), ["weights", "mine"])},
        )
    trial = Trial(tmp_path)
    assert trial.modes == ("eval",) and trial.workers == (3,) and trial.steps("eval") == [7]
    with trial.open(trial.step_files(7, "eval")[0]) as reader:
        names = dict(reader.tensor_names())
        assert names == {
            "block/fc1.relu_input": ("activation_inputs",),
            "custom": ("weights", "mine"),
            "loss": ("losses",),
        }
        read = np.concatenate(list(reader.tensor("block/fc1.relu_input").blocks()))
        np.testing.assert_array_equal(read, activation.reshape(-1))
        assert list(reader.tensor("loss").blocks())[0] == 0.5


def test_a_plain_h5py_file_written_from_the_spec_is_a_trial(tmp_path):
    with h5py.File(tmp_path / "000000000000_train_0.h5", "w") as f:
        f.attrs.update({"poorinit_format": 1, "step": 0, "mode": "train", "worker": 0})
        f.create_dataset("tensors/x.relu_input", data=np.ones(4, dtype="f4")).attrs["collections"] = "activation_inputs"
    with Trial(tmp_path).open(Trial(tmp_path).files[0]) as reader:
        assert reader.tensor_names() == [("x.relu_input", ("activation_inputs",))]


def test_leaving_with_an_exception_does_not_mark_finished(tmp_path):
    with pytest.raises(RuntimeError), TrialWriter(tmp_path) as w:
        w.write_step(0, losses={"loss": 1.0})
        raise RuntimeError("training crashed")
    assert not (tmp_path / worker_finished_marker(0)).exists()
    assert not Trial(tmp_path).finished


def test_a_trial_is_finished_when_every_worker_has_closed(tmp_path):
    first, second = TrialWriter(tmp_path, worker=0), TrialWriter(tmp_path, worker=1)
    first.write_step(0, losses={"loss": 1.0})
    second.write_step(0, losses={"loss": 1.0})
    first.close()
    assert not Trial(tmp_path).finished  # worker 1 may still be writing
    second.close()
    assert Trial(tmp_path).finished


def test_a_plain_finished_file_marks_the_whole_trial(tmp_path):
    TrialWriter(tmp_path, worker=3).write_step(0, losses={"loss": 1.0})
    (tmp_path / FINISHED_MARKER).write_text("")
    assert Trial(tmp_path).finished


def test_writer_leaves_no_temporary_files(tmp_path):
    with TrialWriter(tmp_path) as w:
        w.write_step(0, gradients={"g": np.zeros((300, 300))})
    assert sorted(os.listdir(tmp_path)) == [step_file_name(0), worker_finished_marker(0)]


def test_writer_refuses_integer_tensors_but_accepts_an_integer_loss(tmp_path):
    w = TrialWriter(tmp_path)
    with pytest.raises(TypeError, match="float16/32/64"):
        w.write_step(0, gradients={"g": np.arange(4)})
    w.write_step(0, losses={"loss": 3})


@pytest.mark.parametrize("name", ["", "/abs", "a//b", "a/../b"])
def test_writer_refuses_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match="invalid tensor name"):
        TrialWriter(tmp_path).write_step(0, gradients={name: np.zeros(2)})


def test_chunks_stay_near_one_mebibyte_and_cut_leading_axes():
    assert chunk_shape((268_000_000,), 4) == (262_144,)
    assert chunk_shape((4096, 1024), 4) == (256, 1024)
    assert chunk_shape((10, 10), 8) == (10, 10)
    assert chunk_shape((2, 3, 1_000_000), 4) == (1, 1, 262_144)


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).normal(size=(64, 16, 32, 32)).astype(np.float32),  # four whole chunks
        np.random.default_rng(1).normal(size=(5, 2, 300000)).astype(np.float32),  # chunks cut the last axis
        np.random.default_rng(2).normal(size=(3, 1000, 1000)).astype(np.float32),  # edge chunks, padded
        np.random.default_rng(3).normal(size=(70000,)).astype(">f8"),  # big-endian
        np.random.default_rng(4).normal(size=(2049, 3)).astype(np.float16),
        np.zeros(4096, np.float32),  # all zeros: HDF5's sums are 0
        np.full(4096, np.frombuffer(b"\xff\xff\x00\x00", np.float32)[0]),  # residue 0, stored as 65535
    ],
    ids=["whole", "last-axis", "edge", "big-endian", "float16", "zeros", "residue-0"],
)
def test_raw_chunks_hold_the_bytes_and_checksums_of_hdf5s_filter(tmp_path, values):
    """The writer checksums chunks in numpy and writes them raw: HDF5 must read them as its own."""
    import itertools

    path = TrialWriter(tmp_path / "t").write_step(0, tensors={"x": (values, ["mine"])}, losses={"loss": 1.0})
    with h5py.File(path, "r") as mine, h5py.File(tmp_path / "reference.h5", "w") as reference:
        written = mine["tensors/x"]
        assert written.fletcher32 and written.chunks == chunk_shape(values.shape, values.dtype.itemsize)
        got = written[()]  # HDF5's own read verifies every chunk's checksum
        assert got.dtype == values.dtype and np.array_equal(got, values)
        filtered = reference.create_dataset("x", data=values, chunks=written.chunks, fletcher32=True)
        for offsets in itertools.product(*(range(0, n, c) for n, c in zip(values.shape, written.chunks, strict=True))):
            raw, expected = written.id.read_direct_chunk(offsets)[1], filtered.id.read_direct_chunk(offsets)[1]
            if all(o + c <= n for o, c, n in zip(offsets, written.chunks, values.shape, strict=True)):
                assert raw == expected, offsets
            else:  # an edge chunk: what pads it is nobody's data, the size is HDF5's
                assert len(raw) == len(expected), offsets
    trial = Trial(tmp_path / "t")
    with trial.open(trial.step_files(0)[0]) as reader:  # poorinit's raw path verifies them too
        tensor = reader.tensor("x")
        assert np.array_equal(np.concatenate(list(tensor.blocks())).reshape(values.shape), values)


def test_listing_opens_no_file(tmp_path):
    (tmp_path / step_file_name(0)).write_bytes(b"not hdf5 at all")
    trial = Trial(tmp_path)  # only names were read
    assert trial.steps() == [0]
    with pytest.raises(StepFileError, match="not a readable HDF5 file"):
        trial.open(trial.files[0])


def test_missing_path_and_file_path_are_trial_errors(tmp_path):
    with pytest.raises(TrialError, match="no such trial directory"):
        Trial(tmp_path / "nope")
    (tmp_path / "f").write_text("")
    with pytest.raises(TrialError, match="is a file"):
        Trial(tmp_path / "f")


def test_empty_directory_hints_at_trials_inside(tmp_path):
    TrialWriter(tmp_path / "run-a").write_step(0, losses={"loss": 1.0})
    with pytest.raises(TrialError, match="holds no step files.*trials found inside: run-a"):
        Trial(tmp_path)


def test_two_files_for_one_step_are_refused(tmp_path):
    TrialWriter(tmp_path).write_step(3, losses={"loss": 1.0})
    (tmp_path / "3_train_0.h5").write_bytes((tmp_path / step_file_name(3)).read_bytes())
    with pytest.raises(StepFileError, match="duplicates"):
        Trial(tmp_path)


def test_name_and_attribute_must_agree(tmp_path):
    TrialWriter(tmp_path).write_step(3, losses={"loss": 1.0})
    os.rename(tmp_path / step_file_name(3), tmp_path / step_file_name(4))
    trial = Trial(tmp_path)
    with pytest.raises(StepFileError, match="step=3 disagrees with its file name"):
        trial.open(trial.files[0])


def test_unknown_format_version_says_upgrade(tmp_path):
    TrialWriter(tmp_path).write_step(0, losses={"loss": 1.0})
    with h5py.File(tmp_path / step_file_name(0), "a") as f:
        f.attrs["poorinit_format"] = 7
    trial = Trial(tmp_path)
    with pytest.raises(StepFileError, match="format version 7.*upgrade poorinit to read it"):
        trial.open(trial.files[0])


def test_non_float_dataset_is_refused_when_read(tmp_path):
    TrialWriter(tmp_path).write_step(0, losses={"loss": 1.0})
    with h5py.File(tmp_path / step_file_name(0), "a") as f:
        f.create_dataset("tensors/ints", data=np.arange(5))
    trial = Trial(tmp_path)
    with trial.open(trial.files[0]) as reader, pytest.raises(TensorError, match="'ints': dtype int64"):
        reader.tensor("ints")


# -- optional attributes (docs/format.md): what the recorder says about a tensor --


def test_optional_attributes_are_written_on_tensors_and_the_root(tmp_path):
    with TrialWriter(tmp_path) as writer:
        path = writer.write_step(
            0,
            activation_inputs={"fc1.relu_input": np.ones((4, 3), np.float32)},
            weights={"fc1.weight": np.ones((3, 3), np.float32)},
            losses={"loss": 0.5},
            attrs={
                "fc1.relu_input": {"activation": "leaky_relu", "order": 0, "negative_slope": 0.2, "after": "LayerNorm",
                                   "module": "encoder.layers.0"},
                "fc1.weight": {"module": "Linear", "flags": [1, 2]},
            },
            root_attrs={"num_classes": 10, "note": "é", "ok": True},
        )
    with h5py.File(path, "r") as f:
        assert f.attrs["num_classes"] == 10 and f.attrs["ok"] is np.True_
        assert f.attrs["note"] == "é".encode()
        relu = f["tensors/fc1.relu_input"].attrs
        assert relu["activation"] == b"leaky_relu" and relu["order"] == 0 and relu["negative_slope"] == 0.2
        assert relu["collections"] == b"activation_inputs"
        assert f["tensors/fc1.weight"].attrs["flags"].tolist() == [1, 2]
        # Every string attribute is fixed-length: it sits in the checksummed object header.
        for attrs in (f.attrs, relu):
            for key in attrs:
                string = h5py.check_string_dtype(attrs.get_id(key).dtype)
                assert string is None or string.length is not None, key
    # A reader that knows nothing of them reads the trial as before.
    assert Trial(tmp_path).steps() == [0]


@pytest.mark.parametrize(
    "attrs, root, error, match",
    [
        ({"nope": {"a": 1}}, {}, ValueError, "attributes given for tensor 'nope', which is not written"),
        ({"loss": {"collections": "x"}}, {}, ValueError, "set collections through the groups"),
        ({"loss": {"a": {"b": 1}}}, {}, TypeError, "attribute 'a' of tensor 'loss' is a dict"),
        ({}, {"step": 3}, ValueError, "root attribute 'step' is written by the writer itself"),
        ({}, {"names": ["a", "b"]}, TypeError, "root attribute 'names' is a list"),
    ],
)
def test_attributes_the_format_cannot_hold_are_refused_before_writing(tmp_path, attrs, root, error, match):
    writer = TrialWriter(tmp_path)
    with pytest.raises(error, match=match):
        writer.write_step(0, losses={"loss": 1.0}, attrs=attrs, root_attrs=root)
    assert not list(tmp_path.iterdir())


def test_step_file_keys_read_names_exactly_as_the_step_file_regex_does():
    """The listing's fast path against STEP_FILE_RE itself, on names near the edges of the pattern."""
    names = [
        "000000000001_train_0.h5", "1_eval_3.h5", "123456789012345678_predict_123456789.h5",
        "1234567890123456789_train_0.h5", "_train_0.h5", "1__train_0.h5", "1_train_1234567890.h5",
        "1_train_0.h5\n", "1_train_0.h5\n\n", "1_train_0.h5x", "1_Train_0.h5", "1_train_0.h5.tmp",
        ".000000000001_train_0.h5.1.ab.tmp", "\u0661\u0662_train_0.h5", "\u00b2_train_0.h5", "1_train_\u0663.h5",
        "-1_train_0.h5", "+1_train_0.h5", " 1_train_0.h5", "1_train_0 .h5", "1_train_-0.h5", "1_train_0.H5",
        "FINISHED", "FINISHED_0", "", "_", "1_", "1_train_", "1_train_0", "train_0.h5", "1_eval_0.h5_train_0.h5",
    ]
    expected = []
    for name in names:
        match = fmt.STEP_FILE_RE.match(name)
        if match is not None:
            expected.append((int(match["step"]), match["mode"], int(match["worker"]), name))
    assert fmt.step_file_keys(names) == expected
    assert len(expected) == 6  # the edges above: both sides of each are present
