"""Shared fixtures: tiny trials built with the public writer.

``synthetic_trial`` draws activation inputs, gradients and losses with a
known shape of failure, so a test states the cause and checks the verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from poorinit import TrialWriter


def write_synthetic_trial(
    path: Path,
    *,
    layers: int = 4,
    steps: int = 10,
    layer_scale: Callable[[int], float] = lambda layer: 1.0,
    gradient_scale: float = 0.05,
    loss: Callable[[int], float] = lambda step: 2.0 - 0.1 * step,
    workers: int = 1,
    seed: int = 0,
) -> Path:
    """A trial whose layer ``i`` has activation inputs of std ``layer_scale(i)``."""
    rng = np.random.default_rng(seed)
    for worker in range(workers):
        with TrialWriter(path, worker=worker) as writer:
            for step in range(steps):
                writer.write_step(
                    step,
                    activation_inputs={
                        f"net.{2 * i}.relu_input": rng.normal(0, layer_scale(i), (64, 32)).astype(np.float32)
                        for i in range(layers)
                    },
                    gradients={
                        f"gradient/net.{2 * i}.weight": rng.normal(0, gradient_scale, (32, 32)).astype(np.float32)
                        for i in range(layers)
                    },
                    weights={f"net.{2 * i}.weight": rng.normal(0, 0.2, (32, 32)) for i in range(layers)},
                    losses={"loss": loss(step) + rng.normal(0, 0.01)},
                )
    return path


@pytest.fixture
def healthy_trial(tmp_path: Path) -> Path:
    return write_synthetic_trial(tmp_path / "healthy")


@pytest.fixture
def vanishing_trial(tmp_path: Path) -> Path:
    """Too small a start: the signal shrinks tenfold per layer, gradients vanish, loss flat."""
    return write_synthetic_trial(
        tmp_path / "vanishing", layer_scale=lambda i: 0.1**i, gradient_scale=1e-5, loss=lambda s: 0.693
    )
