"""Step files in TrialWriter's layout are read without HDF5 (poorinit/h5direct.py), exactly as HDF5 reads them.

Every layout the writer produces is opened both ways, with DirectStepReader
and with StepReader (h5py), and everything a check can ask is compared: the
tensors listed with their collections, their shapes, dtypes, attributes and
values, and the file's own attributes. Anything else the parser meets, it
hands to HDF5: those files read as they always did.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from poorinit import TrialWriter, analyze, h5write
from poorinit import trial as trial_module
from poorinit.h5direct import DirectFile, NotDirect
from poorinit.trial import DirectStepReader, StepReader, Trial

ROOT = Path(__file__).resolve().parent.parent
rng = np.random.default_rng(7)


def values(shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


LAYOUTS = {
    "compact tensors": dict(
        gradients={"a.weight": values(16), "b.weight": values((4, 4))}, losses={"loss": np.float32(2.5)}
    ),
    "chunked, several chunks with a short edge": dict(activation_inputs={"net.relu_input": values((700, 1000))}),
    "one chunk": dict(activation_inputs={"net.relu_input": values((64, 256))}),
    "float16, float64 and big-endian": dict(
        activation_inputs={"h.relu_input": values((5000, 3), np.float16), "d.relu_input": values((4000, 3), ">f8"),
                           "s.relu_input": values((3, 5), np.float64)},
    ),
    "empty and scalar tensors": dict(
        activation_inputs={"empty.relu_input": np.zeros((0, 5), np.float32)}, losses={"loss": np.float32(1.0)},
        tensors={"scalar": (np.float64(3.0), ["other"]), "several": (values(3), ["a", "b"])},
    ),
    "every attribute type": dict(
        activation_inputs={"net.relu_input": values(64)},
        attrs={"net.relu_input": {"text": "héllo", "yes": True, "no": False, "count": 3, "x": 2.5, "ints": [1, 2, 3],
                                  "empty": ""}},
        root_attrs={"num_classes": 10, "note": "a note", "floats": [0.5, 1.5]},
    ),
    "nested groups": dict(tensors={"block/inner/deep": (values(8), ["gradients"]), "block/flat": (values(2), ["x"])}),
    "40 tensors in one group (dense links, one B-tree leaf)": dict(
        gradients={f"layer{i}.weight": values(8) for i in range(40)}
    ),
    "300 tensors in one group (a B-tree of two levels, heap blocks below an indirect root)": dict(
        gradients={f"layer{i:03d}.weight": values(8) for i in range(300)}
    ),
}


def through_hdf5(*args: object) -> None:
    raise h5write.Unwritable("this test writes its files through HDF5")


@pytest.fixture(params=["HDF5", "h5write"])
def writer(request, monkeypatch):
    """Every layout written both ways: by HDF5 (as third-party writers do), and by poorinit's own h5write."""
    if request.param == "HDF5":
        monkeypatch.setattr(h5write, "write_step_file", through_hdf5)
    return request.param


@pytest.fixture
def hdf5_writes(monkeypatch):
    monkeypatch.setattr(h5write, "write_step_file", through_hdf5)


def write(tmp_path: Path, name: str, **steps: dict) -> Trial:
    writer = TrialWriter(tmp_path / name)
    for step in range(2):
        writer.write_step(step, **steps)
    writer.close()
    return Trial(tmp_path / name)


def equal(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    return type(a) is type(b) and a == b


def assert_read_alike(trial: Trial) -> None:
    for step_file in trial.files:
        with DirectStepReader(step_file) as direct, StepReader(step_file) as hdf5:
            assert direct.tensor_names() == hdf5.tensor_names()
            assert direct.infos() == hdf5.infos()
            assert list(direct.attrs.items()) == list(hdf5.attrs.items())
            assert all(equal(direct.attrs[k], v) for k, v in hdf5.attrs.items())
            for name, _ in hdf5.tensor_names():
                try:
                    theirs = hdf5.tensor(name)
                except trial_module.TensorError as error:
                    with pytest.raises(trial_module.TensorError) as raised:
                        direct.tensor(name)
                    assert str(raised.value) == str(error)
                    continue
                ours = direct.tensor(name)
                assert ours.shape == theirs.shape and ours.size == theirs.size
                assert list(ours.attrs.items()) == list(theirs.attrs.items())
                assert all(equal(ours.attrs[k], v) for k, v in theirs.attrs.items())
                assert ours.fill_value == theirs.fill_value
                mine, reference = list(ours.blocks()), list(theirs.blocks())
                assert [b.dtype for b in mine] == [b.dtype for b in reference]
                assert equal(np.concatenate([*mine, np.zeros(0, mine[0].dtype if mine else "f4")]),
                             np.concatenate([*reference, np.zeros(0, reference[0].dtype if reference else "f4")]))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_is_read_without_hdf5_as_hdf5_reads_it(tmp_path, layout, writer):
    trial = write(tmp_path, "t", **LAYOUTS[layout])
    assert all(isinstance(trial.open(f), DirectStepReader) for f in trial.files)
    assert_read_alike(trial)


def test_blocks_read_into_place_equal_hdf5s(tmp_path, writer):
    trial = write(tmp_path, "t", gradients={"w": values((524, 1000))})  # two whole chunks of 262 rows
    with DirectStepReader(trial.files[0]) as direct, StepReader(trial.files[0]) as hdf5:
        ours, theirs = direct.tensor("w"), hdf5.tensor("w")
        a, b = np.empty(ours.size * 4 + 4, np.uint8), np.empty(theirs.size * 4 + 4, np.uint8)
        mine, reference = ours.blocks_into(a), theirs.blocks_into(b)
        assert mine is not None and reference is not None
        assert np.array_equal(np.concatenate(list(mine)), np.concatenate(list(reference)))


def test_the_sample_trials_are_read_without_hdf5_and_judged_the_same(monkeypatch):
    for path in sorted((ROOT / "sample_trials").iterdir()):
        trial = Trial(path)
        assert all(isinstance(trial.open(f), DirectStepReader) for f in trial.files[:3])
        direct = analyze(path)
        monkeypatch.setattr(trial_module, "DIRECT_READS", False)
        assert analyze(path) == direct, path.name
        monkeypatch.setattr(trial_module, "DIRECT_READS", True)


def step_file(tmp_path: Path, **steps: dict) -> tuple[Trial, Path]:
    trial = write(tmp_path, "t", **steps)
    return trial, trial.files[0].path


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("dense attributes", "attributes in dense storage"),
        ("compressed", "a filter other than fletcher32"),
        ("three-level B-tree", "a B-tree deeper than one level"),
    ],
)
def test_what_the_parser_does_not_read_goes_to_hdf5(tmp_path, case, why, hdf5_writes):
    if case == "dense attributes":
        trial, path = step_file(tmp_path, gradients={"w": values(4)}, attrs={"w": {f"a{i}": i for i in range(9)}})
    elif case == "compressed":
        writer = TrialWriter(tmp_path / "t", compression="gzip")
        writer.write_step(0, gradients={"w": values((64, 256))})
        writer.close()
        trial = Trial(tmp_path / "t")
        path = trial.files[0].path
    else:
        trial, path = step_file(tmp_path, gradients={f"l{i}.w": values(2) for i in range(3000)})
    with pytest.raises(NotDirect, match=why):
        DirectStepReader(trial.files[0]).close()
    with trial.open(trial.files[0]) as reader:
        assert type(reader) is StepReader
        assert reader.tensor_names()


def test_a_file_written_with_h5pys_defaults_goes_to_hdf5(tmp_path):
    trial = write(tmp_path, "t", gradients={"w": values(40)}, losses={"loss": np.float32(1.0)})
    for step_file in trial.files:
        path = step_file.path
        with h5py.File(path, "r") as f:
            attrs, tensors = dict(f.attrs), {name: (f["tensors"][name][()], f["tensors"][name].attrs["collections"])
                                             for name in f["tensors"]}  # fmt: skip
        os.remove(path)
        with h5py.File(path, "w") as f:  # superblock version 0, symbol-table groups
            f.attrs.update(attrs)
            for name, (data, collections) in tensors.items():
                f.create_dataset(f"tensors/{name}", data=data).attrs["collections"] = collections
    with pytest.raises(NotDirect):
        DirectStepReader(trial.files[0]).close()
    assert type(trial.open(trial.files[0])) is StepReader
    assert_same_errors_or_verdicts(tmp_path / "t")


def assert_same_errors_or_verdicts(path: Path) -> None:
    """``poorinit analyze`` answers the same with and without the parser: exit code and output."""
    def run(direct: bool) -> tuple[int, str, str]:
        code = (f"import poorinit.trial as t; t.DIRECT_READS = {direct}; "
                "from poorinit.cli import main; main(['analyze', '--format', 'json', '--steps', '2', "
                f"{str(path)!r}])")  # fmt: skip
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout, done.stderr

    assert run(True) == run(False)


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))


def metadata_offsets(path: Path) -> dict[str, int]:
    """A byte inside each kind of structure the parser checksums, found by its signature."""
    data = path.read_bytes()
    found = {"superblock": 20}
    for signature in (b"OHDR", b"FRHP", b"FHDB", b"FHIB", b"BTHD", b"BTLF", b"BTIN", b"FAHD", b"FADB"):
        at = data.find(signature)
        if at >= 0:  # past the signature and version; in a heap block, past its header, among the links
            found[signature.decode()] = at + (30 if signature == b"FHDB" else 6)
    return found


@pytest.mark.parametrize(
    "layout",
    ["300 tensors in one group (a B-tree of two levels, heap blocks below an indirect root)",
     "chunked, several chunks with a short edge"],
)
def test_a_flipped_metadata_byte_is_refused_and_hdf5_names_the_damage(tmp_path, layout, writer):
    trial = write(tmp_path, "t", **LAYOUTS[layout])
    path = trial.files[0].path
    pristine = path.read_bytes()
    structures = metadata_offsets(path)
    assert len(structures) >= 2
    for structure, offset in structures.items():
        path.write_bytes(pristine)
        flip(path, offset)
        with pytest.raises(NotDirect, match="checksum"):
            DirectFile_of(path)
        try:  # HDF5's turn: it refuses the file now, or when the damaged structure is read
            reader = trial.open(trial.files[0])
        except trial_module.TrialError as error:
            assert "damaged" in str(error), structure
            continue
        assert type(reader) is StepReader, structure
        reader.close()


def DirectFile_of(path: Path) -> None:  # noqa: N802  (reads the whole file as the reader does)
    fd = os.open(path, os.O_RDONLY)
    try:
        file = DirectFile(fd, os.fstat(fd).st_size)
        stack = [file.root]
        while stack:
            obj = file.object(stack.pop())
            if hasattr(obj, "links"):
                stack.extend(address for _, address in obj.links)
            elif obj.chunk_shape is not None:
                file.chunks(obj)
    finally:
        os.close(fd)


def test_a_flipped_chunk_byte_exits_2_naming_the_tensor_on_both_paths(tmp_path, writer):
    trial = write(tmp_path, "t", activation_inputs={"net.relu_input": values((700, 1000))})
    with DirectStepReader(trial.files[0]) as reader:
        address = min(address for address, _, _ in reader.tensor("net.relu_input")._direct.index.values())
    flip(trial.files[0].path, address + 1000)
    assert_same_errors_or_verdicts(tmp_path / "t")
    done = subprocess.run([sys.executable, "-m", "poorinit", "analyze", str(tmp_path / "t")], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "net.relu_input" in done.stderr and "fletcher32" in done.stderr


def test_long_attributes_datatypes_and_dataspaces_are_not_remembered(tmp_path):
    """The reader remembers short attribute messages by their bytes; a file of long ones cannot fill its memory."""
    from poorinit import h5direct

    trial = write(tmp_path, "t", gradients={"w": values(4)}, attrs={"w": {"note": "x" * 5_000}})
    h5direct._short_attribute.cache_clear()
    with DirectStepReader(trial.files[0]) as reader:
        assert reader.tensor("w").attrs["note"] == "x" * 5_000
    remembered = h5direct._short_attribute.cache_info().currsize
    assert remembered == 5  # the short ones (format, step, mode, worker, collections), not the note
