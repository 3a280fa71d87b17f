"""poorinit.torch.preflight: the rule and the diagnosis on a real model's initialisation, in memory.

Real PyTorch models, one real forward and backward pass each; the model must
come out exactly as it went in.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the pre-flight check needs the extra 'torch'")
from torch import nn  # noqa: E402

from poorinit.torch.preflight import preflight, summary  # noqa: E402

pytestmark = pytest.mark.torch


def mlp(activation: type[nn.Module] = nn.ReLU, depth: int = 6, width: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = []
    features = 16
    for _ in range(depth):
        layers += [nn.Linear(features, width), activation()]
        features = width
    layers.append(nn.Linear(features, 4))
    return nn.Sequential(*layers)


def init(model: nn.Module, how: str) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if how == "he":
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            elif how == "tiny":
                nn.init.normal_(module.weight, 0.0, 0.01)
            elif how == "large":
                nn.init.normal_(module.weight, 0.0, 1.0)
            elif how == "zeros":
                nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
    return model


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(128, 16, generator=generator), torch.randint(0, 4, (128,), generator=generator)


def test_a_he_start_passes(batch) -> None:
    torch.manual_seed(0)
    verdict = preflight(init(mlp(), "he"), batch, nn.CrossEntropyLoss())
    assert verdict.passed, summary(verdict)
    assert verdict.diagnosis is not None and len(verdict.diagnosis.rows) == 6
    assert not verdict.diagnosis.marked
    loss = next(c for c in verdict.criteria if c.check == "loss_decrease")
    assert loss.status.value == "not_applicable"  # one pass has no loss trend, and says so


def test_a_tiny_relu_start_collapses_and_gets_he(batch) -> None:
    torch.manual_seed(0)
    verdict = preflight(init(mlp(), "tiny"), batch, nn.CrossEntropyLoss())
    assert verdict.fired
    assert verdict.diagnosis is not None
    assert verdict.diagnosis.marked[0].mark == "collapse"
    first = verdict.diagnosis.rows[0]
    assert first.name == "1.relu_input" and first.weight is not None and first.weight.name == "0.weight"
    assert first.weight.he_ratio == pytest.approx(0.01 / (2 / 16) ** 0.5, rel=0.15)
    remedy = next(c.remedy for c in verdict.criteria if c.check == "activation_variance")
    assert remedy and 'kaiming_normal_(w, nonlinearity="relu")' in remedy and "up" in remedy


def test_a_large_tanh_start_saturates_and_gets_xavier(batch) -> None:
    torch.manual_seed(0)
    verdict = preflight(init(mlp(nn.Tanh), "large"), batch, nn.CrossEntropyLoss())
    saturation = next(c for c in verdict.criteria if c.check == "saturation")
    assert saturation.fired, summary(verdict)
    assert saturation.remedy and "xavier_normal_" in saturation.remedy


def test_a_zero_start_is_symmetric(batch) -> None:
    verdict = preflight(init(mlp(), "zeros"), batch, nn.CrossEntropyLoss())
    assert verdict.fired
    assert verdict.diagnosis is not None
    assert "symmetric: all 64 units of 2 are identical" in verdict.diagnosis.findings
    assert all(c.remedy and c.remedy.startswith("break the symmetry") for c in verdict.criteria if c.fired)


def test_the_model_comes_out_unchanged(batch) -> None:
    """Parameters, gradients, buffers, every module's mode and the random state, exactly as before."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4))
    model.eval()
    model[3].train()  # a mixed state must survive too
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    grads = [p.grad for p in model.parameters()]
    values = [p.detach().clone() for p in model.parameters()]
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()

    verdict = preflight(model, batch, nn.CrossEntropyLoss())

    assert verdict.diagnosis is not None and verdict.diagnosis.rows  # the pass did run and record
    assert all(torch.equal(p, v) for p, v in zip(model.parameters(), values, strict=True))
    assert all(p.grad is g for p, g in zip(model.parameters(), grads, strict=True))
    assert all(torch.equal(g, torch.full_like(g, 7.0)) for g in grads)
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_no_trial_is_left_on_disk(batch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("poorinit-preflight-")}
    preflight(init(mlp(), "he"), batch, nn.CrossEntropyLoss())
    after = {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("poorinit-preflight-")}
    assert after <= before
    assert list(tmp_path.iterdir()) == []


def test_the_package_exports_the_function(batch) -> None:
    import poorinit.torch

    torch.manual_seed(0)
    assert poorinit.torch.preflight(init(mlp(), "he"), batch, nn.CrossEntropyLoss()).passed


def test_a_loss_without_target(batch) -> None:
    x, _ = batch
    verdict = preflight(init(mlp(), "he"), x, lambda out: out.pow(2).mean())
    assert verdict.diagnosis is not None and len(verdict.diagnosis.rows) == 6


class Functional(nn.Module):
    """Activations called as functions: no nn.ReLU module for a hook to see."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 64), nn.Linear(64, 64), nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.nn.functional.relu(self.fc2(torch.nn.functional.relu(self.fc1(x)))))


def test_functional_activations_are_diagnosed_with_their_weights(batch) -> None:
    """PyTorch's default Linear init is kaiming_uniform_(a=sqrt(5)): std 1/sqrt(3 fan_in), so 1/sqrt(6) of He's."""
    torch.manual_seed(0)
    verdict = preflight(Functional(), batch, nn.CrossEntropyLoss())
    assert verdict.diagnosis is not None
    rows = verdict.diagnosis.rows
    assert [r.kind for r in rows] == ["relu", "relu"]
    assert [r.weight.name if r.weight else None for r in rows] == ["fc1.weight", "fc2.weight"]
    assert verdict.diagnosis.ordered_by == "order attribute"
    for row in rows:
        assert row.weight is not None and row.weight.he_ratio == pytest.approx(1 / 6**0.5, rel=0.1)
