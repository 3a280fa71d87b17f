"""Step files written without HDF5 (poorinit/h5write.py) read back through HDF5 exactly as HDF5's own.

Each test writes the same steps twice: with TrialWriter as it is (h5write)
and with TrialWriter made to use HDF5, then reads both with h5py and
compares everything a reader can see: attributes with their types, datasets
with their shapes, dtypes, values, layouts, chunks and filters.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import poorinit
from poorinit import format as fmt
from poorinit import h5write
from poorinit.checksum import _lookup3_python, chunk_checksum, lookup3
from poorinit.writer import TrialWriter


def _steps(count: int, make: Any) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    return [make(rng, step) for step in range(count)]


def _through_hdf5(*args: object) -> None:
    raise h5write.Unwritable("written through HDF5 for comparison")


def _write_both(tmp_path: Path, steps: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
                **options: Any) -> tuple[Path, Path]:  # fmt: skip
    ours, theirs = tmp_path / "h5write", tmp_path / "hdf5"
    writer = TrialWriter(ours, fsync=False, **options)
    for number, groups in enumerate(steps):
        writer.write_step(number, **groups)
    with monkeypatch.context() as patch:
        patch.setattr(h5write, "write_step_file", _through_hdf5)
        writer = TrialWriter(theirs, fsync=False, **options)
        for number, groups in enumerate(steps):
            writer.write_step(number, **groups)
    return ours, theirs


def _seen(path: Path) -> dict[str, Any]:
    """Everything h5py shows of a step file: objects, attribute values and types, layouts, filters, values."""
    seen: dict[str, Any] = {}

    def attributes(obj: Any) -> dict[str, Any]:
        found = {}
        for key in obj.attrs:
            value, dtype = obj.attrs[key], obj.attrs.get_id(key).dtype
            found[key] = (np.asarray(value).tolist(), str(dtype), h5py.check_string_dtype(dtype))
        return found

    with h5py.File(path, "r") as file:
        seen["/"] = attributes(file)

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group):
                seen[name] = ("group", sorted(obj), attributes(obj))
                return
            plist = obj.id.get_create_plist()
            filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
            values = obj[()]
            seen[name] = ("dataset", obj.shape, str(obj.dtype), plist.get_layout(), obj.chunks, filters,
                          obj.compression, attributes(obj), values.tobytes(), values.dtype.str)  # fmt: skip

        file.visititems(visit)
    return seen


def _assert_read_alike(ours: Path, theirs: Path) -> None:
    names = sorted(p.name for p in theirs.glob("*.h5"))
    assert names and names == sorted(p.name for p in ours.glob("*.h5"))
    for name in names:
        assert _seen(ours / name) == _seen(theirs / name), name


def _recorded_like(rng: np.random.Generator, step: int) -> dict[str, Any]:
    """A recorder's step: activation inputs, gradients of every size class, a loss, attributes."""
    return {
        "activation_inputs": {
            "fc1.relu_input": rng.standard_normal((64, 256)).astype(np.float32),
            # 3.4 MiB in chunks of 262 rows (1, 262, 1000): six, every second one short
            "block.conv.relu_input": rng.standard_normal((3, 300, 1000)).astype(np.float32),
        },
        "gradients": {
            "gradient/fc1.weight": rng.standard_normal((256, 256)).astype(np.float32),
            "gradient/fc1.bias": rng.standard_normal(256).astype(np.float32),  # compact
            "gradient/tiny": rng.standard_normal(5).astype(np.float16),
            "gradient/wide": rng.standard_normal((700, 513)).astype(np.float64),  # chunks cut along rows
            "gradient/empty": np.zeros((0, 4), dtype=np.float32),
            "gradient/transposed": rng.standard_normal((512, 700)).astype(np.float32).T,  # not C-contiguous
            "gradient/big_endian": rng.standard_normal((40, 50)).astype(">f4"),
            "gradient/one_value": np.float64(rng.standard_normal()),  # a scalar dataset
        },
        "losses": {"loss": float(rng.standard_normal()), "aux": np.float16(rng.standard_normal())},
        "weights": {f"layer{i}.weight": rng.standard_normal(3).astype(np.float32) for i in range(40)}
        if step == 0
        else {},
        "attrs": {
            "fc1.relu_input": {"activation": "relu", "order": 0, "negative_slope": 0.5, "after": "Linear",
                               "empty": "", "text": "héllo"},
            "block.conv.relu_input": {"activation": "relu", "order": 1, "flag": True, "off": False,
                                      "sizes": [1, 2.5], "ints": [1, 2, 3]},
        },
        "root_attrs": {"num_classes": 10, "workers": 2},
    }


def test_every_layout_reads_back_through_hdf5_as_hdf5s_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _assert_read_alike(*_write_both(tmp_path, _steps(3, _recorded_like), monkeypatch))


def test_a_trial_written_either_way_gets_the_same_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = _write_both(tmp_path, _steps(3, _recorded_like), monkeypatch)
    assert poorinit.analyze(ours, steps=3).criteria == poorinit.analyze(theirs, steps=3).criteria


def test_the_same_step_written_twice_is_the_same_bytes(tmp_path: Path) -> None:
    (step,) = _steps(1, _recorded_like)
    paths = [TrialWriter(tmp_path / name, fsync=False).write_step(0, **step) for name in ("a", "b")]
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_a_layout_is_reused_only_with_the_values_of_each_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Later steps with the same tensors reuse the first one's layout (h5write._Layout): each file still holds
    its own values, root attributes of the same length but another value, and compact and chunked tensors;
    a root attribute of another length, or a tensor of another shape, is a layout of its own."""
    monkeypatch.setattr(h5write, "_LAYOUTS", type(h5write._LAYOUTS)())
    rng = np.random.default_rng(3)
    steps = [
        {"gradients": {"w": rng.standard_normal((64, 64), dtype=np.float32), "b": rng.standard_normal(8)},
         "losses": {"loss": float(step)}, "root_attrs": {"num_classes": 10 + step, "note": note}}
        for step, note in enumerate(["ab", "cd", "ef", "longer"])
    ]  # fmt: skip
    steps.append({**steps[0], "gradients": {"w": rng.standard_normal((32, 64), dtype=np.float32), "b": np.ones(8)}})
    ours, theirs = _write_both(tmp_path, steps, monkeypatch)
    _assert_read_alike(ours, theirs)
    assert len(h5write._LAYOUTS) == 3  # steps 0-2 share one; "longer" and the smaller w are two more
    writer = TrialWriter(tmp_path / "many", fsync=False)
    for step in range(h5write.LAYOUTS_KEPT + 4):
        writer.write_step(step, gradients={"w": np.zeros(step + 1, np.float32)})
    assert len(h5write._LAYOUTS) == h5write.LAYOUTS_KEPT  # the oldest are let go: memory stays bounded


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compressed_steps_are_written_by_hdf5(tmp_path: Path, compression: str) -> None:
    path = TrialWriter(tmp_path / "t", fsync=False, compression=compression).write_step(
        0, gradients={"gradient/w": np.ones((300, 300), np.float32)}
    )
    with h5py.File(path, "r") as file:
        dataset = file["tensors/gradient/w"]
        assert dataset.compression == compression and dataset.fletcher32


def test_what_h5write_does_not_write_goes_to_hdf5(tmp_path: Path) -> None:
    """A header message past 64 KiB (a long string attribute), a group of more links than h5write keeps in its
    header, a paged chunk index: HDF5 writes those."""
    path = TrialWriter(tmp_path / "t", fsync=False).write_step(
        0, gradients={"w": np.ones(4, np.float32)}, attrs={"w": {"note": "x" * 70_000}}
    )
    with h5py.File(path, "r") as file:
        assert file["tensors/w"].attrs["note"] == b"x" * 70_000
    many = {f"l{i}.w": np.ones(1, np.float32) for i in range(h5write.MAX_COMPACT_LINKS + 1)}
    path = TrialWriter(tmp_path / "many", fsync=False).write_step(0, gradients=many)
    with h5py.File(path, "r") as file:  # HDF5 stores the group's links in a fractal heap
        assert len(file["tensors"]) == len(many)
    with pytest.raises(h5write.Unwritable, match="paged"):  # 1,100 chunks of 1 MiB
        h5write._Dataset((1100, 1 << 18), np.dtype(np.float32), [])


def test_a_damaged_file_is_refused(tmp_path: Path) -> None:
    """The checksums h5write writes are the ones readers verify: a flipped byte still exits 2."""
    writer = TrialWriter(tmp_path / "t", fsync=False)
    for number, step in enumerate(_steps(3, _recorded_like)):
        writer.write_step(number, **step)
    path = tmp_path / "t" / fmt.step_file_name(2, "train", 0)
    with h5py.File(path, "r") as file:
        offset = file[fmt.TENSOR_GROUP]["block.conv.relu_input"].id.get_chunk_info(1).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 1000] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(poorinit.PoorinitError, match="block.conv.relu_input"):
        poorinit.analyze(tmp_path / "t", steps=3)


@pytest.mark.parametrize("how", ["a few segments per writev", "no writev"])
def test_the_segments_reach_the_file_whole_however_they_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "no writev":
        monkeypatch.delattr(os, "writev")
    else:
        monkeypatch.setattr(h5write, "IOV_MAX", 3)
    _assert_read_alike(*_write_both(tmp_path, _steps(2, _recorded_like), monkeypatch))


def test_a_step_file_gets_the_permissions_hdf5_gives_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    previous = os.umask(0o002)  # a group-writable umask: 0o644 would differ from HDF5's 0o666 less the umask
    try:
        ours, theirs = _write_both(tmp_path, _steps(1, _recorded_like), monkeypatch)
    finally:
        os.umask(previous)
    name = fmt.step_file_name(0, "train", 0)
    assert (ours / name).stat().st_mode == (theirs / name).stat().st_mode == 0o100664


def test_lookup3_is_hdf5s() -> None:
    """The Python lookup3 and HDF5's own (when found) agree, on every length around the 12-byte blocks."""
    data = bytes(np.random.default_rng(1).integers(0, 256, 100, dtype=np.uint8))
    for length in range(0, 100):
        assert lookup3(data[:length]) == _lookup3_python(data[:length])
    assert _lookup3_python(b"") == 0xDEADBEEF
    # Bob Jenkins' published test value: hashlittle("Four score and seven years ago", 30, 0).
    assert _lookup3_python(b"Four score and seven years ago") == 0x17770551


def test_hdf5s_lookup3_is_found_without_importing_h5py() -> None:
    """Writing and reading step files without HDF5 need not pay h5py's import (about 50 ms) where a wheel ships
    libhdf5."""
    code = ("import sys; from poorinit import checksum; f = checksum.lookup3_function(); "
            "print(f is not checksum._lookup3_python, 'h5py' in sys.modules, "
            "bool(checksum._shipped_libhdf5()))")  # fmt: skip
    native, imported, shipped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                               check=True).stdout.split()  # fmt: skip
    assert native == "True"
    assert imported == ("False" if shipped == "True" else "True")


def test_chunk_checksum_is_the_filters() -> None:
    """Zero data sums to zero; any other residue of 0 is stored as 65535, as HDF5's filter does."""
    assert chunk_checksum(np.zeros(64, dtype=np.uint8)) == bytes(4)
    body = np.zeros(4096, dtype=np.uint8)
    body[0] = 1
    sum2, sum1 = divmod(int.from_bytes(chunk_checksum(body), "little"), 1 << 16)
    assert 0 < sum1 <= 65535 and 0 < sum2 <= 65535


def test_long_attribute_values_are_not_remembered(tmp_path: Path) -> None:
    """Encoded attributes are kept for reuse only when short: a step of long notes cannot grow the writer's memory."""
    h5write._ATTRIBUTES.clear()  # what other tests wrote before
    writer = TrialWriter(tmp_path / "t", fsync=False)
    for step in range(3):
        writer.write_step(step, gradients={"w": np.ones(4, np.float32)}, attrs={"w": {"note": f"{step}" * 5_000}})
    assert not [key for key in h5write._ATTRIBUTES if key[0] == "note"]
    writer.write_step(3, gradients={"w": np.ones(4, np.float32)}, attrs={"w": {"note": "short"}})
    assert ("note", "str", "'short'") in h5write._ATTRIBUTES
