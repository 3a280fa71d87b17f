"""Chunks read raw, their fletcher32 checksums verified with numpy.

The raw path must read exactly what h5py's ordinary path reads, catch every
damaged byte HDF5 would catch, and stand aside for any dataset whose filter
pipeline does more than verify a checksum (compressed, shuffled, ...)."""

import os
import subprocess

import h5py
import numpy as np
import pytest

from poorinit import TrialWriter
from poorinit import trial as trial_module
from poorinit.checksum import fletcher32_matches, fletcher32_sums
from poorinit.errors import TensorError
from poorinit.format import step_file_name
from poorinit.trial import BLOCK_ELEMENTS, DatasetTensor

rng = np.random.default_rng(11)


def reference_fletcher32(data: bytes) -> tuple[int, int]:
    """HDF5's H5_checksum_fletcher32, byte pair by byte pair, as sums modulo 65535."""
    sum1 = sum2 = 0
    for index in range(0, len(data) - 1, 2):
        sum1 = (sum1 + (data[index] << 8 | data[index + 1])) % 65535
        sum2 = (sum2 + sum1) % 65535
    if len(data) % 2:
        sum1 = (sum1 + (data[-1] << 8)) % 65535
        sum2 = (sum2 + sum1) % 65535
    return sum1, sum2


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 9, 1000, 16383, 16384, 16385, 40_001, 3 * 16384 + 5, (1 << 21) + 7])
def test_checksum_sums_equal_hdf5s_arithmetic(size):
    data = rng.integers(0, 256, size, dtype=np.uint8)
    assert fletcher32_sums(data) == reference_fletcher32(data.tobytes())


def test_checksum_of_extreme_bytes():
    for fill in (0, 255):
        data = np.full(70_000, fill, dtype=np.uint8)
        assert fletcher32_sums(data) == reference_fletcher32(data.tobytes())


def write(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, (values, options) in datasets.items():
            f.create_dataset(name, data=values, **options)
    return path


LAYOUTS = {
    "fletcher32": (rng.standard_normal((3, 300_000)).astype(np.float32), {"chunks": (1, 65_536), "fletcher32": True}),
    "rows": (rng.standard_normal((1000, 3)).astype(np.float32), {"chunks": (64, 3), "fletcher32": True}),
    "plain chunks": (rng.standard_normal(100_000), {"chunks": (4096,)}),
    "big-endian": (rng.standard_normal((5, 7, 9)).astype(">f4"), {"chunks": (2, 7, 9), "fletcher32": True}),
    "float16": (rng.standard_normal(70_001).astype(np.float16), {"chunks": (8192,), "fletcher32": True}),
    "gzip": (rng.standard_normal((40, 500)).astype(np.float32), {"chunks": (8, 500), "compression": "gzip"}),
    "shuffle+fletcher32": (rng.standard_normal(50_000).astype(np.float32),
                           {"chunks": (4096,), "shuffle": True, "fletcher32": True}),
    "lzf": (rng.standard_normal(50_000).astype(np.float32), {"chunks": (4096,), "compression": "lzf"}),
    "square chunks": (rng.standard_normal((50, 70)).astype(np.float32), {"chunks": (8, 8), "fletcher32": True}),
    "contiguous": (rng.standard_normal((30, 40)), {}),
    "large chunks": (rng.standard_normal(3 * BLOCK_ELEMENTS + 17).astype(np.float32),
                     {"chunks": (BLOCK_ELEMENTS // 2,), "fletcher32": True}),
}
RAW = {"fletcher32", "rows", "plain chunks", "big-endian", "float16", "large chunks"}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_reads_the_values_h5py_reads(tmp_path, name, monkeypatch):
    values, options = LAYOUTS[name]
    path = write(tmp_path / "t.h5", data=(values, options))
    with h5py.File(path, "r", rdcc_nbytes=0) as f:
        tensor = DatasetTensor(f["data"], "data", 0, path)
        assert (tensor._raw_layout() is not None) == (name in RAW)
        blocks = list(tensor.blocks())  # held all at once: no buffer may be reused under them
        assert all(b.dtype.isnative and b.size <= BLOCK_ELEMENTS for b in blocks)
        assert np.array_equal(np.concatenate(blocks), values.astype(values.dtype.newbyteorder("=")).reshape(-1))
        monkeypatch.setattr(trial_module, "RAW_READS", False)
        filtered = list(tensor.blocks())
    assert np.array_equal(np.concatenate(blocks), np.concatenate(filtered))


def chunk_offset(path, name, index=0):
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(index)
        return info.byte_offset, info.size


def test_a_stored_checksum_verifies_and_a_flipped_byte_does_not(tmp_path):
    values = rng.standard_normal(1 << 18).astype(np.float32)  # one 1 MiB chunk
    path = write(tmp_path / "t.h5", data=(values, {"chunks": (1 << 18,), "fletcher32": True}))
    with h5py.File(path, "r") as f:
        _, raw = f["data"].id.read_direct_chunk((0,))
    raw = np.frombuffer(raw, dtype=np.uint8)
    assert fletcher32_matches(raw[:-4], raw[-4:])
    for position in (0, 1, 12345, raw.size - 5):
        damaged = raw.copy()
        damaged[position] ^= 0x10
        assert not fletcher32_matches(damaged[:-4], damaged[-4:])


def test_one_flipped_byte_in_a_large_chunk_exits_2_naming_the_tensor(tmp_path):
    trial = tmp_path / "trial"
    with TrialWriter(trial) as writer:
        for step in range(6):
            writer.write_step(
                step,
                activation_inputs={f"net.{i}.relu_input": rng.standard_normal(1 << 20).astype(np.float32)
                                   for i in range(2)},
                gradients={"gradient/net.0.weight": rng.standard_normal(1 << 20).astype(np.float32) * 0.01},
                losses={"loss": 2.0 - 0.1 * step},
            )
    step_file = trial / step_file_name(3)
    offset, size = chunk_offset(step_file, "tensors/gradient/net.0.weight", index=2)
    assert size > 1 << 19  # a large chunk
    data = bytearray(step_file.read_bytes())
    data[offset + size // 2] ^= 0x01
    step_file.write_bytes(bytes(data))
    result = subprocess.run(["poorinit", "analyze", str(trial)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "tensor 'gradient/net.0.weight'" in result.stderr
    assert "fails its fletcher32 checksum" in result.stderr and "the file is damaged" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_chunk_of_the_wrong_length_is_damage_not_data(tmp_path, monkeypatch):
    # A chunk index that claims fewer bytes than a chunk holds (a forged or
    # truncated index entry) is refused before a value is read.
    values = rng.standard_normal(8192).astype(np.float32)
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", shape=values.shape, dtype=np.float32, chunks=(4096,), fletcher32=True)
        ds[...] = values
        # Rewrite chunk 1 raw, 8 bytes short.
        ds.id.write_direct_chunk((4096,), values[4096:].tobytes()[:-8] + b"\0\0\0\0")
    with h5py.File(path, "r") as f:
        tensor = DatasetTensor(f["data"], "data", 0, path)
        with pytest.raises(trial_module.TensorError, match="holds 16380 bytes, not 16388"):
            list(tensor.blocks())


@pytest.mark.parametrize("name", sorted(RAW))
def test_chunks_read_from_the_open_descriptor_equal_h5pys_raw_reads(tmp_path, name):
    # A step file's chunks are read with os.preadv at the address HDF5 gives
    # (outside h5py's lock, so two threads read at once): the same bytes.
    values, options = LAYOUTS[name]
    path = write(tmp_path / "t.h5", data=(values, options))
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path, "r", rdcc_nbytes=0) as f:
            by_descriptor = np.concatenate(list(DatasetTensor(f["data"], "data", 0, path, raw_fd=fd).blocks()))
            by_h5py = np.concatenate(list(DatasetTensor(f["data"], "data", 0, path).blocks()))
    finally:
        os.close(fd)
    assert np.array_equal(by_descriptor, by_h5py)


def test_a_chunk_cut_off_by_the_end_of_the_file_is_damage(tmp_path):
    values = rng.standard_normal(1 << 18).astype(np.float32)
    path = write(tmp_path / "t.h5", data=(values, {"chunks": (1 << 16,), "fletcher32": True}))
    offset, _ = chunk_offset(path, "data", index=3)
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path, "r", rdcc_nbytes=0) as f:
            tensor = DatasetTensor(f["data"], "data", 0, path, raw_fd=fd)
            os.truncate(path, offset + 100)  # under the open file: HDF5 has read its metadata already
            with pytest.raises(TensorError, match="lies past the end of the file"):
                list(tensor.blocks())
    finally:
        os.close(fd)
