"""The six cases of issue 8, each on a real small PyTorch run, with the verdict a user should get.

Each run is recorded with poorinit.torch.Recorder over its first 10 steps of
real training (mini-batches, a real optimiser) and judged with the default
rule parameters. Where a case needs metadata the recorder may not write yet
(``after`` on an activation input), the test writes it into the step files
itself, with the value the recorder would write.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import poorinit  # noqa: E402
from poorinit.torch import Recorder, RecordingWarning  # noqa: E402

pytestmark = pytest.mark.torch
CLASSES = 4


def tabular(seed: int, samples: int = 1024, features: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=g)
    y = (torch.tanh(x @ torch.randn(features, 16, generator=g) / 4) @ torch.randn(16, CLASSES, generator=g)).argmax(1)
    return TensorDataset(x, y)


def record(model: nn.Module, path: Path, optimiser: torch.optim.Optimizer, data: TensorDataset,
           batch: int = 64, seed: int = 0, steps: int = 10) -> Path:
    """Train ``steps`` steps on DataLoader mini-batches, recording every one."""
    loader = DataLoader(data, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed))
    batches = ((x, y) for _ in range(steps) for x, y in loader)
    with Recorder(model, path, steps=steps) as rec:
        for _, (x, y) in zip(range(steps), batches, strict=False):
            with rec.step():
                loss = nn.functional.cross_entropy(model(x), y)
                optimiser.zero_grad()
                loss.backward()
                rec.loss(loss)
                optimiser.step()
    return path


def annotate(trial: Path, attrs: Callable[[str], dict[str, object]]) -> None:
    """Write the metadata the recorder writes (docs/format.md), where it is not there yet."""
    for step_file in sorted(trial.glob("*.h5")):
        with h5py.File(step_file, "a") as f:
            for name, dataset in f["tensors"].items():
                for key, value in attrs(name).items():
                    dataset.attrs.setdefault(key, value)


def criterion(verdict: poorinit.Verdict, name: str) -> poorinit.CriterionResult:
    return next(c for c in verdict.criteria if c.check == name)


def deep_mlp(hidden: int = 16) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(32, 64), nn.ReLU()]
    for _ in range(hidden - 1):
        layers += [nn.Linear(64, 64), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(64, CLASSES))


@pytest.mark.parametrize("optimiser", ["sgd-momentum", "adam"])
def test_case1_a_healthy_deep_he_start_passes_although_the_first_updates_rescale_its_layers(
    tmp_path: Path, optimiser: str
) -> None:
    torch.manual_seed(0)
    model = deep_mlp()
    for module in model:
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if optimiser == "sgd-momentum"
           else torch.optim.Adam(model.parameters(), lr=1e-3))
    verdict = poorinit.analyze(record(model, tmp_path / "he", opt, tabular(0)), num_classes=CLASSES)
    activation = criterion(verdict, "activation_variance")
    assert activation.status is poorinit.Status.PASSED and activation.step == 0, activation.reason
    assert not verdict.fired, [c.reason for c in verdict.criteria if c.fired]


class ResidualBN(nn.Module):
    """8 blocks of Linear-BatchNorm-ReLU-Linear with a skip, one final ReLU on the residual stream."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(32, 32)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32)) for _ in range(8)
        )
        self.act = nn.ReLU()
        self.head = nn.Linear(32, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(self.act(x))


def _residual_bn_trial(path: Path, init: Callable[[torch.Tensor], object]) -> Path:
    torch.manual_seed(0)
    model = ResidualBN()
    for name, p in model.named_parameters():
        if p.ndim == 2:
            init(p)
        elif name.endswith("bias") and ".1." not in name:
            nn.init.zeros_(p)
    record(model, path, torch.optim.Adam(model.parameters(), lr=1e-3), tabular(1))
    annotate(path, lambda name: {"after": "BatchNorm1d"} if name.startswith("blocks.") else {})
    return path


def test_case2_batchnorm_repairs_a_tiny_start_so_the_rule_passes(tmp_path: Path) -> None:
    trial = _residual_bn_trial(tmp_path / "tiny", lambda p: nn.init.normal_(p, 0.0, 0.01))
    verdict = poorinit.analyze(trial, num_classes=CLASSES)
    activation = criterion(verdict, "activation_variance")
    # Only the final ReLU is not right after a BatchNorm: nothing left to compare, said plainly.
    assert activation.status is poorinit.Status.NOT_APPLICABLE
    assert "normalisation layer" in activation.reason and "8 of the 9" in activation.reason
    assert not verdict.fired, [c.reason for c in verdict.criteria if c.fired]


def test_case2_a_pathological_start_still_fires_behind_batchnorm(tmp_path: Path) -> None:
    verdict = poorinit.analyze(_residual_bn_trial(tmp_path / "zeros", nn.init.zeros_), num_classes=CLASSES)
    activation = criterion(verdict, "activation_variance")
    assert activation.fired and activation.direction == "dead"
    assert "BatchNorm1d" in activation.reason and "constant" in activation.reason


class GRUClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0][:, -1])


def test_case3_a_trial_without_activation_inputs_says_it_could_not_look(tmp_path: Path) -> None:
    # A GRU's gates run inside one kernel: no hook or function mode sees them,
    # so the trial holds no activation input at all.
    torch.manual_seed(0)
    model = GRUClassifier()
    g = torch.Generator().manual_seed(2)
    data = TensorDataset(torch.randn(512, 6, 8, generator=g), torch.randint(0, CLASSES, (512,), generator=g))
    with pytest.warns(RecordingWarning) as warned:
        trial = record(model, tmp_path / "gru", torch.optim.Adam(model.parameters(), lr=1e-3), data)
    said = " ".join(str(w.message) for w in warned)
    assert "GRU" in said and "no activation input was recorded" in said
    verdict = poorinit.analyze(trial, num_classes=CLASSES)
    activation = criterion(verdict, "activation_variance")
    assert activation.status is poorinit.Status.NOT_APPLICABLE
    assert "no activation input was recorded" in activation.reason
    # The criteria that could look did: the verdict rests on them, and says which could not.
    assert {c.check for c in verdict.criteria if c.status is not poorinit.Status.NOT_APPLICABLE} >= {
        "gradient_spread", "loss_decrease", "initial_loss"}


class PreLNEncoder(nn.Module):
    """3 blocks, each LayerNorm -> Linear -> GELU -> Linear with a skip: every GELU input follows a LayerNorm."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.embed = nn.Linear(32, d)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)) for _ in range(3)
        )
        self.head = nn.Linear(d, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def test_case4_a_start_hundreds_of_times_worse_than_chance_fires_the_initial_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = PreLNEncoder()
    for p in model.parameters():
        if p.ndim == 2:
            nn.init.normal_(p, 0.0, 1.0)
    trial = record(model, tmp_path / "large", torch.optim.Adam(model.parameters(), lr=1e-3), tabular(3))
    verdict = poorinit.analyze(trial, num_classes=CLASSES)
    initial = criterion(verdict, "initial_loss")
    assert initial.fired and initial.figure is not None and initial.figure > 100, initial.reason
    assert initial.direction == "explode" and "x chance (ln 4" in initial.reason
    # The recorder saw the cross-entropy and wrote K: the parameter is not even needed.
    assert criterion(poorinit.analyze(trial), "initial_loss").fired


def test_case4_without_k_the_initial_loss_says_how_to_give_it(tmp_path: Path) -> None:
    with poorinit.TrialWriter(tmp_path / "t", fsync=False) as writer:
        for step in range(10):
            writer.write_step(step, gradients={"gradient/w": np.linspace(-1, 1, 100)}, losses={"loss": 1267.0 - step})
    unknown = criterion(poorinit.analyze(tmp_path / "t"), "initial_loss")
    assert unknown.status is poorinit.Status.NOT_APPLICABLE and "--num-classes" in unknown.reason


@pytest.mark.parametrize("seed", range(4))
def test_case5_healthy_default_starts_with_adam_and_a_dataloader_do_not_fire_the_loss(
    tmp_path: Path, seed: int
) -> None:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, CLASSES))
    trial = record(model, tmp_path / "default", torch.optim.Adam(model.parameters(), lr=1e-3), tabular(seed),
                   batch=32, seed=seed)
    verdict = poorinit.analyze(trial, num_classes=CLASSES)
    assert not criterion(verdict, "loss_decrease").fired, criterion(verdict, "loss_decrease").reason
    assert not verdict.fired


def test_case5_a_loss_that_does_not_move_at_all_still_fires(tmp_path: Path) -> None:
    # All-zero weights on a balanced full batch: the output bias gets no gradient either,
    # every step's loss is exactly ln K.
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, CLASSES))
    for p in model.parameters():
        nn.init.zeros_(p)
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(5))
    y = torch.arange(64) % CLASSES
    trial = record(model, tmp_path / "zeros", torch.optim.Adam(model.parameters(), lr=1e-3), TensorDataset(x, y),
                   batch=64)
    loss = criterion(poorinit.analyze(trial), "loss_decrease")
    assert loss.fired and "does not change" in loss.reason, loss.reason


def test_case6_dead_relus_are_described_as_dead_units(tmp_path: Path) -> None:
    # Biases of -3 on unit-variance inputs: nine ReLUs in ten never turn on.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, CLASSES))
    for module in model:
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.constant_(module.bias, -3.0 if module.out_features == 64 else 0.0)
    trial = record(model, tmp_path / "dead", torch.optim.SGD(model.parameters(), lr=0.01), tabular(6))
    gradient = criterion(poorinit.analyze(trial, num_classes=CLASSES), "gradient_spread")
    assert gradient.fired and gradient.direction == "dead", gradient.reason
    assert "dead units" in gradient.reason and "same value" not in gradient.reason
    share = float(gradient.reason.split("%")[0])
    assert share >= 50 and math.isfinite(gradient.figure or 0.0)

