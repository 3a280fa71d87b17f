"""A step shaped like the one before is written from its template: byte for byte what HDF5 writes.

Each test writes the same steps twice: once with one TrialWriter (the first
step through HDF5, the later ones from its template) and once with a fresh
TrialWriter per step (every step through HDF5), and compares the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import poorinit
from poorinit import format as fmt
from poorinit.checksum import chunk_checksum
from poorinit.template import _lookup3_python, lookup3
from poorinit.writer import TrialWriter


def _steps(count: int, make: Any) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    return [make(rng, step) for step in range(count)]


def _write_both(tmp_path: Path, steps: list[dict[str, Any]], **options: Any) -> tuple[Path, Path, TrialWriter]:
    templated, plain = tmp_path / "templated", tmp_path / "plain"
    writer = TrialWriter(templated, fsync=False, **options)
    for number, groups in enumerate(steps):
        writer.write_step(number, **groups)
    for number, groups in enumerate(steps):
        TrialWriter(plain, fsync=False, **options).write_step(number, **groups)
    return templated, plain, writer


def _assert_same_files(templated: Path, plain: Path) -> None:
    names = sorted(p.name for p in plain.glob("*.h5"))
    assert names == sorted(p.name for p in templated.glob("*.h5"))
    for name in names:
        assert (templated / name).read_bytes() == (plain / name).read_bytes(), name


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
        },
        "losses": {"loss": float(rng.standard_normal()), "aux": np.float16(rng.standard_normal())},
        "attrs": {
            "fc1.relu_input": {"activation": "relu", "order": 0, "negative_slope": 0.5, "after": "Linear"},
            "block.conv.relu_input": {"activation": "relu", "order": 1, "flag": True, "sizes": [1, 2.5]},
        },
        "root_attrs": {"num_classes": 10, "workers": 2},
    }


def test_later_steps_are_the_bytes_hdf5_writes(tmp_path: Path) -> None:
    templated, plain, writer = _write_both(tmp_path, _steps(5, _recorded_like))
    assert writer._template is not None  # the later steps did take the template
    _assert_same_files(templated, plain)
    # It keeps the file's metadata only, not the values: kilobytes (14 KiB) of an 11 MiB step file.
    assert writer._template.metadata.kept < 64 * 1024 < (plain / fmt.step_file_name(4, "train", 0)).stat().st_size
    figures = {k: v for k, v in poorinit.analyze(templated).to_dict().items() if k != "trial"}
    assert figures == {k: v for k, v in poorinit.analyze(plain).to_dict().items() if k != "trial"}


def test_every_value_reads_back(tmp_path: Path) -> None:
    steps = _steps(4, _recorded_like)
    templated, _, _ = _write_both(tmp_path, steps)
    for number, groups in enumerate(steps):
        with h5py.File(templated / fmt.step_file_name(number, "train", 0), "r") as file:
            assert file.attrs["step"] == number
            for group in ("activation_inputs", "gradients"):
                for name, array in groups[group].items():
                    np.testing.assert_array_equal(file[fmt.TENSOR_GROUP][name][()], array)
            assert file[fmt.TENSOR_GROUP]["loss"][()] == groups["losses"]["loss"]


def test_a_new_structure_goes_through_hdf5_again(tmp_path: Path) -> None:
    """Weights at the first step only, a tensor that appears, an attribute that changes: each still exact."""

    def make(rng: np.random.Generator, step: int) -> dict[str, Any]:
        groups: dict[str, Any] = {
            "gradients": {"gradient/w": rng.standard_normal((32, 32)).astype(np.float32)},
            "losses": {"loss": 1.0 / (step + 1)},
            "root_attrs": {"num_classes": 3 if step < 4 else 4},
        }
        if step == 0:
            groups["weights"] = {"w": rng.standard_normal((32, 32)).astype(np.float32)}
        if step >= 2:
            groups["activation_inputs"] = {"a.relu_input": rng.standard_normal((8, 9)).astype(np.float32)}
        return groups

    templated, plain, _ = _write_both(tmp_path, _steps(7, make))
    _assert_same_files(templated, plain)


def test_equal_attribute_values_of_other_types_never_share_a_template(tmp_path: Path) -> None:
    values = [1, True, 1.0, 0.0, -0.0, "1"]

    def make(rng: np.random.Generator, step: int) -> dict[str, Any]:
        array = rng.standard_normal(16).astype(np.float32)
        return {"activation_inputs": {"x.relu_input": array}, "losses": {"loss": 0.5},
                "attrs": {"x.relu_input": {"v": values[step // 2]}}}  # fmt: skip

    templated, plain, _ = _write_both(tmp_path, _steps(2 * len(values), make))
    _assert_same_files(templated, plain)


def test_what_the_template_cannot_parse_stays_with_hdf5(tmp_path: Path) -> None:
    """Twelve root attributes move the step number to dense attribute storage: no template, same bytes."""

    def make(rng: np.random.Generator, step: int) -> dict[str, Any]:
        return {"losses": {"loss": float(step)}, "root_attrs": {f"extra{i}": i for i in range(12)}}

    templated, plain, writer = _write_both(tmp_path, _steps(3, make))
    assert writer._template is None
    _assert_same_files(templated, plain)


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compressed_steps_are_always_written_by_hdf5(tmp_path: Path, compression: str) -> None:
    def make(rng: np.random.Generator, step: int) -> dict[str, Any]:
        return {"gradients": {"gradient/w": rng.standard_normal((300, 300)).astype(np.float32)},
                "losses": {"loss": float(step)}}  # fmt: skip

    templated, plain, writer = _write_both(tmp_path, _steps(3, make), compression=compression)
    assert writer._template is None
    _assert_same_files(templated, plain)


def test_a_damaged_templated_file_is_refused(tmp_path: Path) -> None:
    """The checksums a template writes are the ones readers verify: a flipped byte still exits 2."""
    templated, _, _ = _write_both(tmp_path, _steps(3, _recorded_like))
    path = templated / fmt.step_file_name(2, "train", 0)
    with h5py.File(path, "r") as file:
        offset = file[fmt.TENSOR_GROUP]["block.conv.relu_input"].id.get_chunk_info(1).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 1000] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(poorinit.PoorinitError, match="block.conv.relu_input"):
        poorinit.analyze(templated, steps=3)


def test_lookup3_is_hdf5s() -> None:
    """The Python lookup3 and HDF5's own (when found) agree, on every length around the 12-byte blocks."""
    data = bytes(np.random.default_rng(1).integers(0, 256, 100, dtype=np.uint8))
    for length in range(0, 100):
        assert lookup3(data[:length]) == _lookup3_python(data[:length])
    assert _lookup3_python(b"") == 0xDEADBEEF
    # Bob Jenkins' published test value: hashlittle("Four score and seven years ago", 30, 0).
    assert _lookup3_python(b"Four score and seven years ago") == 0x17770551


def test_chunk_checksum_is_the_filters() -> None:
    """Zero data sums to zero; any other residue of 0 is stored as 65535, as HDF5's filter does."""
    assert chunk_checksum(np.zeros(64, dtype=np.uint8)) == bytes(4)
    body = np.zeros(4096, dtype=np.uint8)
    body[0] = 1
    sum2, sum1 = divmod(int.from_bytes(chunk_checksum(body), "little"), 1 << 16)
    assert 0 < sum1 <= 65535 and 0 < sum2 <= 65535


def test_bytes_the_parser_does_not_understand_are_a_template_error_never_a_crash(tmp_path: Path) -> None:
    from poorinit.template import StepTemplate, TemplateError

    writer = TrialWriter(tmp_path / "t", fsync=False)
    path = writer.write_step(0, losses={"loss": 1.0})
    image = path.read_bytes()
    StepTemplate.build(path, 0, 48, {}, {})  # the root group's header follows the 48-byte superblock
    damaged_images = (b"", bytes(200), image[:60], image[:100], image.replace(b"OHDR", b"OHDX"),
                      image.replace(b"step", b"stap"))  # fmt: skip
    for number, damaged in enumerate(damaged_images):
        (tmp_path / f"damaged{number}").write_bytes(damaged)
        with pytest.raises(TemplateError):
            StepTemplate.build(tmp_path / f"damaged{number}", 0, 48, {}, {})


@pytest.mark.parametrize("how", ["a few segments per writev", "no writev"])
def test_the_segments_reach_the_file_whole_however_they_are_written(tmp_path: Path, monkeypatch, how: str) -> None:
    import os

    import poorinit.template

    if how == "no writev":
        monkeypatch.delattr(os, "writev")
    else:
        monkeypatch.setattr(poorinit.template, "_IOV_MAX", 3)
    templated, plain, writer = _write_both(tmp_path, _steps(3, _recorded_like))
    assert writer._template is not None
    _assert_same_files(templated, plain)


def test_a_templated_file_gets_the_permissions_hdf5_gives_its_files(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o002)  # a group-writable umask: 0o644 would differ from HDF5's 0o666 less the umask
    try:
        templated, plain, writer = _write_both(tmp_path, _steps(3, _recorded_like))
    finally:
        os.umask(previous)
    assert writer._template is not None
    for name in (fmt.step_file_name(step, "train", 0) for step in range(3)):
        assert (templated / name).stat().st_mode == (plain / name).stat().st_mode == 0o100664
