"""Measure how well the rule tells poor starts from healthy ones, on real training runs.

Every run trains a small network from a labelled initialisation: an 8-layer MLP
and a 3-layer CNN, each with ReLU and with Tanh, each with SGD (momentum) and
with Adam at ordinary learning rates, on noisy mini-batches of synthetic data,
over several seeds. The first steps are recorded with poorinit.torch.Recorder
into a temporary directory and judged by poorinit.analyze with the default
rule parameters. Runs then train on, hook-free, so the table can show whether
each start went on to learn.

Labels (docs/accuracy.md explains each):
- poor: all zeros; a constant (0.5 for every weight and bias); too small,
  N(0, 0.01); too large, N(0, 1); and, for ReLU, He scaled by 3.
- healthy: He for ReLU, Xavier for Tanh, orthogonal with calculate_gain of
  the activation.
- borderline, counted apart: PyTorch's default, and Xavier on ReLU. Both
  shrink the signal with depth by design yet often still train.

    python scripts/accuracy.py [--seeds 3] [--train-steps 150] [--activation-inputs-regex REGEX]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import poorinit
from poorinit.torch import Recorder

RECORDED_STEPS = 10
CLASSES = 4
LEARNING_RATES = {"sgd": 0.01, "adam": 1e-3}
BATCH = 32

POOR = ("zeros", "const", "tiny", "large", "he-x3")
HEALTHY = {"relu": ("he", "orthogonal"), "tanh": ("xavier", "orthogonal")}
BORDERLINE = {"relu": ("default", "xavier"), "tanh": ("default",)}
SHORT = {"activation_variance": "act", "gradient_spread": "grad", "loss_decrease": "loss", "saturation": "sat"}


def initialise(model: nn.Module, strategy: str, activation: str) -> None:
    """Apply ``strategy`` to every Linear and Conv2d layer (biases zeroed unless said otherwise)."""
    if strategy == "default":
        return
    gain = nn.init.calculate_gain(activation)
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        weight, bias = module.weight, module.bias
        if strategy == "zeros":
            nn.init.zeros_(weight)
        elif strategy == "const":
            nn.init.constant_(weight, 0.5)
        elif strategy == "tiny":
            nn.init.normal_(weight, 0.0, 0.01)
        elif strategy == "large":
            nn.init.normal_(weight, 0.0, 1.0)
        elif strategy in ("he", "he-x3"):
            nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")
            if strategy == "he-x3":
                with torch.no_grad():
                    weight.mul_(3.0)
        elif strategy == "xavier":
            nn.init.xavier_normal_(weight)
        elif strategy == "orthogonal":
            nn.init.orthogonal_(weight, gain=gain)
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
        if strategy == "const":
            nn.init.constant_(bias, 0.5)
        else:
            nn.init.zeros_(bias)


def activation_module(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.Tanh()


def mlp(activation: str) -> nn.Module:
    """8 hidden layers of 64 units, as deep as the seed's probe but narrower."""
    layers: list[nn.Module] = []
    width = 32
    for _ in range(8):
        layers += [nn.Linear(width, 64), activation_module(activation)]
        width = 64
    return nn.Sequential(*layers, nn.Linear(64, CLASSES))


def cnn(activation: str) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        activation_module(activation),
        nn.Conv2d(8, 16, 3, padding=1),
        activation_module(activation),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        activation_module(activation),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, CLASSES),
    )


def teacher_data(generator: torch.Generator, samples: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian inputs labelled by a fixed random linear teacher: learnable, not trivial."""
    inputs = torch.randn(samples, 32, generator=generator)
    return inputs, (inputs @ torch.randn(32, CLASSES, generator=generator)).argmax(dim=1)


def pattern_data(generator: torch.Generator, samples: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """16x16 images of a horizontal bar, a vertical bar, a diagonal or a square, anywhere, in noise."""
    images = torch.randn(samples, 1, 16, 16, generator=generator) * 0.5
    labels = torch.randint(0, CLASSES, (samples,), generator=generator)
    corners = torch.randint(0, 11, (samples, 2), generator=generator)
    for image, label, (row, col) in zip(images, labels.tolist(), corners.tolist(), strict=True):
        if label == 0:
            image[0, row + 2, col : col + 6] += 2.0
        elif label == 1:
            image[0, row : row + 6, col + 2] += 2.0
        elif label == 2:
            image[0, torch.arange(row, row + 6), torch.arange(col, col + 6)] += 2.0
        else:
            image[0, row + 1 : row + 5, col + 1 : col + 5] += 1.0
    return images, labels


ARCHITECTURES: dict[str, tuple[Callable[[str], nn.Module], Callable[[torch.Generator], tuple[torch.Tensor, ...]]]] = {
    "mlp8": (mlp, teacher_data),
    "cnn3": (cnn, pattern_data),
}


@dataclass(frozen=True)
class Run:
    architecture: str
    activation: str
    optimiser: str
    init: str
    label: str
    seed: int


@dataclass(frozen=True)
class Outcome:
    run: Run
    verdict: poorinit.Verdict
    early_loss: float  # mean over the recorded steps
    late_loss: float  # mean over the last 10 steps

    @property
    def fired(self) -> list[str]:
        return [SHORT.get(c.check, c.check) for c in self.verdict.criteria if c.fired]


def runs(seeds: int) -> list[Run]:
    found = []
    for architecture in ARCHITECTURES:
        for activation in ("relu", "tanh"):
            poor = [s for s in POOR if s != "he-x3" or activation == "relu"]
            labelled = [(s, "poor") for s in poor] + [(s, "healthy") for s in HEALTHY[activation]]
            labelled += [(s, "borderline") for s in BORDERLINE[activation]]
            for optimiser in LEARNING_RATES:
                for init, label in labelled:
                    found += [Run(architecture, activation, optimiser, init, label, seed) for seed in range(seeds)]
    return found


def train(run: Run, directory: Path, train_steps: int, params: dict[str, str]) -> Outcome:
    build, make_data = ARCHITECTURES[run.architecture]
    generator = torch.Generator().manual_seed(1000 + run.seed)
    inputs, labels = make_data(generator)
    torch.manual_seed(run.seed)
    model = build(run.activation)
    initialise(model, run.init, run.activation)
    rate = LEARNING_RATES[run.optimiser]
    optimiser = (
        torch.optim.SGD(model.parameters(), lr=rate, momentum=0.9)
        if run.optimiser == "sgd"
        else torch.optim.Adam(model.parameters(), lr=rate)
    )
    loss_fn = nn.CrossEntropyLoss()
    trial = directory / f"{run.architecture}-{run.activation}-{run.optimiser}-{run.init}-{run.seed}"
    losses = []
    with Recorder(model, trial, steps=RECORDED_STEPS) as rec:
        for _ in range(train_steps):
            batch = torch.randint(0, len(inputs), (BATCH,), generator=generator)
            with rec.step():
                loss = loss_fn(model(inputs[batch]), labels[batch])
                optimiser.zero_grad()
                loss.backward()
                rec.loss(loss)
                optimiser.step()
            losses.append(loss.item())
    verdict = poorinit.analyze(trial, **params)
    return Outcome(run, verdict, mean(losses[:RECORDED_STEPS]), mean(losses[-10:]))


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def criteria_counts(outcomes: Sequence[Outcome]) -> str:
    counts = Counter(name for outcome in outcomes for name in outcome.fired)
    return " ".join(f"{name}:{count}" for name, count in sorted(counts.items())) or "-"


def median_figure(outcomes: Sequence[Outcome], check: str) -> str:
    """The median over seeds of one criterion's figure, "n/a" where it did not apply."""
    figures = sorted(
        c.figure
        for o in outcomes
        for c in o.verdict.criteria
        if c.check == check and c.status is not poorinit.Status.NOT_APPLICABLE and c.figure is not None
    )
    return f"{figures[len(figures) // 2]:.3g}" if figures else "n/a"


def table(outcomes: Sequence[Outcome]) -> list[str]:
    groups: dict[tuple[str, ...], list[Outcome]] = {}
    for outcome in outcomes:
        r = outcome.run
        groups.setdefault((r.architecture, r.activation, r.optimiser, r.init, r.label), []).append(outcome)
    lines = [
        "| arch | act | optimiser | init | label | runs | fired | criteria fired "
        "| act ratio | grad spread | loss change | saturated share | loss steps 0-9 | loss at end |",
        "|---|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, group in groups.items():
        fired = sum(o.verdict.fired for o in group)
        early = mean([o.early_loss for o in group])
        late = mean([o.late_loss for o in group])
        figures = " | ".join(median_figure(group, check) for check in SHORT)
        lines.append(
            f"| {' | '.join(key)} | {len(group)} | {fired} | {criteria_counts(group)} | {figures} "
            f"| {early:.3g} | {late:.3g} |"
        )
    return lines


def totals(outcomes: Sequence[Outcome]) -> list[str]:
    lines = []
    for label, verb in (("poor", "caught"), ("healthy", "flagged"), ("borderline", "fired on")):
        group = [o for o in outcomes if o.run.label == label]
        fired = sum(o.verdict.fired for o in group)
        lines.append(f"{label}: {verb} {fired} of {len(group)} ({100 * fired / max(len(group), 1):.1f}%)")
    return lines


def details(outcome: Outcome) -> list[str]:
    """Every criterion's figures, for a poor start missed or a healthy one flagged."""
    r = outcome.run
    lines = [
        f"{r.architecture} {r.activation} {r.optimiser} {r.init} seed {r.seed} ({r.label}): "
        f"{'fired' if outcome.verdict.fired else 'passed'}"
    ]
    for c in outcome.verdict.criteria:
        steps = " ".join(f"{value:.3g}" for _, value in c.per_step)
        lines.append(f"    {c.check}: {c.status.value}: {c.reason}")
        if steps:
            lines.append(f"        per step: {steps}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=150, help="steps per run, the first 10 recorded")
    parser.add_argument("--activation-inputs-regex", help="instead of the rule's default, .*relu_input")
    args = parser.parse_args(argv)
    params = {} if args.activation_inputs_regex is None else {"activation_inputs_regex": args.activation_inputs_regex}
    started = time.monotonic()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="poorinit-accuracy-") as directory:
        for run in runs(args.seeds):
            outcomes.append(train(run, Path(directory), args.train_steps, params))
    print("\n".join(table(outcomes)))
    print()
    print("\n".join(totals(outcomes)))
    wrong = [o for o in outcomes if (o.run.label == "poor") != o.verdict.fired and o.run.label != "borderline"]
    if wrong:
        print("\nmissed poor starts and flagged healthy ones:")
        for outcome in wrong:
            print("\n".join(details(outcome)))
    rule = ", ".join(f"{k}={v}" for k, v in params.items()) or "default rule parameters"
    print(
        f"\n{len(outcomes)} runs, {rule}, in {time.monotonic() - started:.0f} s on {platform.machine()}, "
        f"{os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
