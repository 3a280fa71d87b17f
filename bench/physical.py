"""The physical floor: the bytes the rule needs, read into preallocated
buffers, and one numpy pass over them, in one process.

No statistics beyond one ``np.var`` per tensor, no percentiles, no checks: the
least any program must do to look at every value the rule judges. It reads
the same datasets as bench/floor.py (activation inputs by name, gradients and
losses by their collection attribute, from the first ``--steps`` step files of
worker 0) with h5py's ordinary read path (which verifies every fletcher32
checksum), each into one buffer reused from tensor to tensor. It imports
nothing from poorinit and prints the number of values it read.

    python bench/physical.py TRIAL [--steps 10] [--activation-inputs-regex REGEX]
"""

from __future__ import annotations

import argparse
import os
import re

import h5py
import numpy as np

STEP_FILE = re.compile(r"^(\d+)_train_0\.h5$")


def marks(dataset: h5py.Dataset) -> list[str]:
    raw = dataset.attrs.get("collections")
    values = [] if raw is None else [raw] if isinstance(raw, (str, bytes)) else list(np.asarray(raw).reshape(-1))
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trial")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--activation-inputs-regex", default=".*relu_input")
    args = parser.parse_args()
    activation = re.compile(args.activation_inputs_regex)
    files = sorted((int(m[1]), m[0]) for m in map(STEP_FILE.match, os.listdir(args.trial)) if m)
    buffers: dict[np.dtype, np.ndarray] = {}
    values = 0
    for _, name in files[: args.steps]:
        with h5py.File(os.path.join(args.trial, name), "r") as f:
            datasets: list[tuple[str, h5py.Dataset]] = []
            f["tensors"].visititems(
                lambda key, obj, datasets=datasets: (
                    datasets.append((key, obj)) if isinstance(obj, h5py.Dataset) else None
                )
            )
            for key, dataset in datasets:
                found = marks(dataset)
                wanted = (activation.match(key) and (not found or "activation_inputs" in found)) or \
                    "gradients" in found or "losses" in found
                if not wanted or dataset.size == 0:
                    continue
                buffer = buffers.get(dataset.dtype)
                if buffer is None or buffer.size < dataset.size:
                    buffer = buffers[dataset.dtype] = np.empty(dataset.size, dataset.dtype)
                view = buffer[: dataset.size].reshape(dataset.shape)
                dataset.read_direct(view)
                np.var(view)
                values += dataset.size
    print(values)


if __name__ == "__main__":
    main()
