"""The trials the benchmark measures, written in a temporary directory.

Large tensors are written with plain h5py in slices (the layout TrialWriter
gives them: ~1 MiB chunks, fletcher32, a collections attribute), so building
a 1 GiB tensor never holds it in memory; everything else goes through the
public TrialWriter.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from poorinit import TrialWriter
from poorinit import format as fmt
from poorinit.writer import chunk_shape


def _pool(elements: int, seed: int = 0, size: int = 4) -> list[np.ndarray]:
    """A few standard-normal float32 arrays to scale: drawing fresh values for
    every tensor of a 1.3 GB trial would take longer than the benchmark."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(elements, dtype=np.float32) for _ in range(size)]


def layered_trial(path: Path, *, steps: int, layers: int, elements: int) -> Path:
    """A healthy network's first steps: per layer an activation input and a
    gradient of ``elements`` float32 values each, and a falling loss."""
    pool = _pool(elements)
    with TrialWriter(path) as writer:
        for step in range(steps):
            writer.write_step(
                step,
                activation_inputs={
                    f"net.{i}.relu_input": pool[(step + i) % len(pool)] * np.float32(0.95**i) for i in range(layers)
                },
                gradients={
                    f"gradient/net.{i}.weight": pool[(step + i + 1) % len(pool)] * np.float32(0.01)
                    for i in range(layers)
                },
                losses={"loss": 2.0 - 0.1 * step},
            )
    return path


def extend_trial(short: Path, path: Path, *, total_steps: int) -> Path:
    """``short``'s step files (hard links where possible) and more steps after
    them, each a valid step file with one loss value, up to ``total_steps``."""
    path.mkdir(parents=True)
    first = 0
    for source in sorted(short.iterdir()):
        target = path / source.name
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        parsed = fmt.parse_step_file_name(source)
        if parsed is not None:
            first = max(first, parsed.step + 1)
    for step in range(first, total_steps):
        with h5py.File(path / fmt.step_file_name(step), "w") as f:
            f.attrs[fmt.FORMAT_ATTR] = fmt.FORMAT_VERSION
            f.attrs["step"] = step
            f.attrs["mode"] = "train"
            f.attrs["worker"] = 0
            loss = f.create_group(fmt.TENSOR_GROUP).create_dataset("loss", data=np.float64(1.0))
            loss.attrs[fmt.COLLECTIONS_ATTR] = [fmt.LOSSES]
    return path


def big_gradient_trial(path: Path, *, elements: int, seed: int = 1) -> Path:
    """One step holding one float32 gradient of ``elements`` values, written in slices."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    slab = 1 << 24
    with h5py.File(path / fmt.step_file_name(0), "w") as f:
        f.attrs[fmt.FORMAT_ATTR] = fmt.FORMAT_VERSION
        f.attrs["step"] = 0
        f.attrs["mode"] = "train"
        f.attrs["worker"] = 0
        group = f.create_group(fmt.TENSOR_GROUP)
        dataset = group.create_dataset(
            "gradient/big.weight", shape=(elements,), dtype=np.float32,
            chunks=chunk_shape((elements,), 4), fletcher32=True,
        )
        dataset.attrs[fmt.COLLECTIONS_ATTR] = [fmt.GRADIENTS]
        for start in range(0, elements, slab):
            count = min(slab, elements - start)
            dataset[start : start + count] = rng.standard_normal(count, dtype=np.float32) * np.float32(0.01)
    (path / fmt.FINISHED_MARKER).write_text("")
    return path


def many_trials(root: Path, *, count: int, steps: int = 3) -> Path:
    """``count`` copies of one small trial below ``root`` (what ``scan`` walks)."""
    template = layered_trial(root / "template", steps=steps, layers=2, elements=256)
    for index in range(count):
        shutil.copytree(template, root / "trials" / f"run-{index:05d}")
    shutil.rmtree(template)
    return root / "trials"
