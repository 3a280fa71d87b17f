"""Regenerate sample_trials/ from real PyTorch runs of the weight-initialisation labs.

Lab 1 is an 8-layer signal probe (Linear 32->128, then 7x Linear 128->128, each
followed by its activation). The lab only sends data forward; the rule needs
gradients and a loss, so the probe gets a head and a short training on a task
it can learn: labels of a fixed random linear teacher, Adam, mini-batches.
Lab 2 is the moons classifier, trained as in the lab (full batch, Adam
lr=0.01, seed 9); make_moons is written out here so scikit-learn is not needed.

Every run is recorded by poorinit.torch.Recorder for the steps the rule reads
and then trained on to the lab's length, so the printed end loss shows whether
the start recovered. Nothing here is tuned to the verdicts; docs/accuracy.md
says what the rule concludes on each trial and why.

    python scripts/make_sample_trials.py [--out sample_trials]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from poorinit.torch import Recorder

RECORDED_STEPS = 10
# The trials are committed, so they are kept small (under 10 MB together): a
# sample of rows of each activation input and of values of each parameter.
# The rule's figures become estimates; docs/accuracy.md compares them with a
# full recording.
MOON_ROWS, MOON_STRIDE = 64, 1
PROBE_ROWS, PROBE_STRIDE = 16, 32

Strategy = str


@dataclass(frozen=True)
class Summary:
    trial: str
    start_loss: float
    end_loss: float
    accuracy: float


def init_linear_layers(model: nn.Module, strategy: Strategy) -> None:
    """The labs' apply_init, over every Linear layer of the model."""
    if strategy == "default":
        return
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        if strategy == "zeros":
            nn.init.zeros_(module.weight)
        elif strategy == "tiny":
            nn.init.normal_(module.weight, 0.0, 0.01)
        elif strategy == "large":
            nn.init.normal_(module.weight, 0.0, 1.0)
        elif strategy == "xavier":
            nn.init.xavier_normal_(module.weight)
        elif strategy == "he":
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
        nn.init.zeros_(module.bias)


def make_moons(n_samples: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's make_moons: two interleaving half circles, shuffled, plus gaussian noise."""
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer = np.linspace(0, np.pi, n_out)
    inner = np.linspace(0, np.pi, n_in)
    x = np.concatenate([np.cos(outer), 1 - np.cos(inner)])
    y = np.concatenate([np.sin(outer), 1 - np.sin(inner) - 0.5])
    points = np.stack([x, y], axis=1)
    labels = np.concatenate([np.zeros(n_out, dtype=np.int64), np.ones(n_in, dtype=np.int64)])
    order = rng.permutation(n_samples)
    points, labels = points[order], labels[order]
    return points + rng.normal(scale=noise, size=points.shape), labels


def stratified_split(labels: np.ndarray, test_size: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices keeping each class's share, like train_test_split(stratify=y)."""
    train, test = [], []
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        cut = round(len(members) * test_size)
        test.append(members[:cut])
        train.append(members[cut:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


class MoonMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def moon_run(strategy: Strategy, out: Path) -> Summary:
    """Lab 2's train_once, recorded."""
    rng = np.random.default_rng(9)
    points, labels = make_moons(600, noise=0.22, rng=rng)
    train, test = stratified_split(labels, 0.25, rng)
    x = torch.tensor(points, dtype=torch.float32)
    y = torch.tensor(labels)
    x_train, y_train, x_val, y_val = x[train], y[train], x[test], y[test]

    torch.manual_seed(9)
    model = MoonMLP()
    init_linear_layers(model, strategy)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    trial = f"moon-{strategy}"
    losses = []
    with Recorder(
        model, out / trial, steps=RECORDED_STEPS, activation_rows=MOON_ROWS, parameter_stride=MOON_STRIDE
    ) as rec:
        for _ in range(120):
            with rec.step():
                loss = loss_fn(model(x_train), y_train)
                optimizer.zero_grad()
                loss.backward()
                rec.loss(loss)
                optimizer.step()
            losses.append(loss.item())
    return Summary(trial, losses[0], losses[-1], accuracy(model, x_val, y_val))


def build_probe(activation: Callable[[], nn.Module]) -> nn.Sequential:
    """Lab 1's build_probe."""
    layers: list[nn.Module] = []
    in_features = 32
    for _ in range(8):
        layers += [nn.Linear(in_features, 128), activation()]
        in_features = 128
    return nn.Sequential(*layers)


class ProbeNet(nn.Module):
    """The probe plus a linear head, so that there is a loss to train on."""

    def __init__(self, activation: Callable[[], nn.Module], classes: int) -> None:
        super().__init__()
        self.net = build_probe(activation)
        self.head = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))


def probe_run(strategy: Strategy, activation: Callable[[], nn.Module], out: Path) -> Summary:
    """Classify the labels of a fixed random linear teacher: learnable, so a healthy start learns."""
    classes, samples, batch = 4, 4096, 64
    data = torch.Generator().manual_seed(7)
    inputs = torch.randn(samples, 32, generator=data)
    labels = (inputs @ torch.randn(32, classes, generator=data)).argmax(dim=1)
    x_val, y_val = inputs[-512:], labels[-512:]
    inputs, labels = inputs[:-512], labels[:-512]

    torch.manual_seed(7)
    model = ProbeNet(activation, classes)
    init_linear_layers(model, strategy)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    kind = "relu" if activation is nn.ReLU else "tanh"
    trial = f"probe-{strategy}-{kind}"
    losses = []
    order = torch.randperm(len(inputs), generator=data)
    with Recorder(
        model, out / trial, steps=RECORDED_STEPS, activation_rows=PROBE_ROWS, parameter_stride=PROBE_STRIDE
    ) as rec:
        for start in range(0, 200 * batch, batch):
            index = order[start % len(order) : start % len(order) + batch]
            with rec.step():
                loss = loss_fn(model(inputs[index]), labels[index])
                optimizer.zero_grad()
                loss.backward()
                rec.loss(loss)
                optimizer.step()
            losses.append(loss.item())
    return Summary(trial, losses[0], float(np.mean(losses[-10:])), accuracy(model, x_val, y_val))


RUNS: dict[str, Callable[[Path], Summary]] = {
    **{f"moon-{s}": (lambda out, s=s: moon_run(s, out)) for s in ("default", "zeros", "tiny", "large", "xavier", "he")},
    "probe-tiny-relu": lambda out: probe_run("tiny", nn.ReLU, out),
    "probe-large-tanh": lambda out: probe_run("large", nn.Tanh, out),
    "probe-xavier-tanh": lambda out: probe_run("xavier", nn.Tanh, out),
    "probe-he-relu": lambda out: probe_run("he", nn.ReLU, out),
}


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "sample_trials")
    parser.add_argument("trials", nargs="*", metavar="TRIAL", help=f"which to make (default: all of {', '.join(RUNS)})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.trials) - set(RUNS))
    if unknown:
        parser.error(f"unknown trials: {', '.join(unknown)}")
    # One thread and deterministic kernels: a rerun writes the same numbers.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{'trial':18s} {'start loss':>10s} {'end loss':>9s} {'val acc':>7s} {'size':>8s}")
    for name in args.trials or RUNS:
        shutil.rmtree(args.out / name, ignore_errors=True)
        summary = RUNS[name](args.out)
        size = size_of(args.out / name)
        print(
            f"{summary.trial:18s} {summary.start_loss:10.3f} {summary.end_loss:9.3f} "
            f"{summary.accuracy:7.3f} {size / 1e6:6.2f}MB"
        )
    total = size_of(args.out)
    print(f"total {total / 1e6:.2f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
