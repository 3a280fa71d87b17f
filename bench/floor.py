"""The floor: a plain h5py + numpy script computing what the rule computes.

It reads exactly the datasets the rule needs from the first ``--steps`` step
files of worker 0 (activation inputs by name, gradients and losses by their
collection attribute), each in one read, and computes the same statistics
the way one would by hand: ``np.var`` per activation input, ``np.percentile``
of all gradient values of a step, ``np.std`` per gradient to name the
quietest, the loss. It prints the figures as JSON so that the benchmark can
check poorinit's against them. It imports nothing from poorinit.

    python bench/floor.py TRIAL [--steps 10] [--activation-inputs-regex REGEX]
"""

from __future__ import annotations

import argparse
import json
import os
import re

import h5py
import numpy as np

STEP_FILE = re.compile(r"^(\d+)_train_0\.h5$")


def depth_key(name: str) -> list[object]:
    """Natural order of layer names ('net.10' after 'net.2'), as the rule orders layers without `order`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def collections(dataset: h5py.Dataset) -> list[str]:
    raw = dataset.attrs.get("collections")
    values = [] if raw is None else [raw] if isinstance(raw, (str, bytes)) else list(np.asarray(raw).reshape(-1))
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def step_figures(path: str, activation: re.Pattern[str]) -> dict[str, object]:
    variances: dict[str, float] = {}
    gradients: list[np.ndarray] = []
    stds: dict[str, float] = {}
    losses: dict[str, float] = {}
    with h5py.File(path, "r") as f:
        datasets: list[tuple[str, h5py.Dataset]] = []

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                datasets.append((name, obj))

        f["tensors"].visititems(visit)
        for name, dataset in datasets:
            marks = collections(dataset)
            if activation.match(name) and (not marks or "activation_inputs" in marks):
                variances[name] = float(np.var(dataset[()], dtype=np.float64))
            elif "gradients" in marks:
                values = dataset[()].reshape(-1)
                gradients.append(values)
                stds[name] = float(np.std(values, dtype=np.float64))
            elif "losses" in marks:
                losses[name] = float(np.asarray(dataset[()]).reshape(-1)[0])
    figures: dict[str, object] = {"losses": losses}
    if len(variances) >= 2:
        # The rule's figure (docs/rule.md): the per-layer factor exp(|slope|) of the
        # least-squares line through log-variance in depth order (largest/smallest for two).
        ordered = [variances[n] for n in sorted(variances, key=depth_key)]
        if min(ordered) == 0:
            figures["activation_ratio"] = float("inf")
        elif len(ordered) == 2:
            figures["activation_ratio"] = max(ordered) / min(ordered)
        else:
            logs = np.log(np.array(ordered))
            positions = np.arange(len(logs)) - (len(logs) - 1) / 2
            figures["activation_ratio"] = float(np.exp(abs(positions @ (logs - logs.mean()) / (positions @ positions))))
    if gradients:
        pooled = np.concatenate(gradients, dtype=np.float64)
        finite = np.isfinite(pooled)
        if not finite.all():
            pooled = pooled[finite]
        low, high = np.percentile(pooled, [5, 95], overwrite_input=True)
        figures["gradient_width"] = float(high - low)
        figures["quietest"] = min(stds, key=lambda n: stds[n])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trial")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--activation-inputs-regex", default=".*relu_input")
    args = parser.parse_args()
    activation = re.compile(args.activation_inputs_regex)
    files = sorted((int(m[1]), m[0]) for m in map(STEP_FILE.match, os.listdir(args.trial)) if m)
    result = {step: step_figures(os.path.join(args.trial, name), activation) for step, name in files[: args.steps]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
