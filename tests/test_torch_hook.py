"""poorinit.torch.hook: recording a training loop left exactly as it was.

Each test runs a plain PyTorch loop (no rec.step(), no rec.loss()) after two
registration lines, and reads back what was recorded.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import poorinit  # noqa: E402
import poorinit.torch  # noqa: E402
from poorinit import format as fmt  # noqa: E402
from poorinit.torch import RecordingError  # noqa: E402
from poorinit.trial import Trial  # noqa: E402


def classifier() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def batches(count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 8, generator=generator), torch.randint(0, 3, (8,), generator=generator)) for _ in range(count)
    ]


def plain_loop(model: nn.Module, loss_fn: nn.Module, optimiser: torch.optim.Optimizer, data: list) -> list[float]:
    """The user's loop, as it was before poorinit: nothing in it knows about recording."""
    losses = []
    for x, y in data:
        optimiser.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def read(trial: Path, step: int) -> dict[str, np.ndarray]:
    (step_file,) = Trial(trial).step_files(step)
    with h5py.File(step_file.path, "r") as f:
        out = {}
        f[fmt.TENSOR_GROUP].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        return out


def test_the_hook_records_the_first_steps_of_an_unchanged_loop(tmp_path):
    torch.manual_seed(0)
    model, loss_fn = classifier(), nn.CrossEntropyLoss()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    initial = model[0].weight.detach().clone()
    hook = poorinit.torch.hook(model, tmp_path / "t", loss_fn=loss_fn, steps=3)

    data = batches(5)
    losses = plain_loop(model, loss_fn, optimiser, data)

    trial = Trial(tmp_path / "t")
    assert trial.steps() == [0, 1, 2]
    assert hook.done and trial.finished  # marked finished once the last requested step is written
    step0, step1 = read(tmp_path / "t", 0), read(tmp_path / "t", 1)
    assert {"1.relu_input", "3.tanh_input", "loss", "0.weight", "gradient/0.weight"} <= set(step0)
    np.testing.assert_allclose(step0["loss"], losses[0], rtol=1e-6)
    np.testing.assert_allclose(step1["loss"], losses[1], rtol=1e-6)
    # Weights as the step's forward saw them, before any update; written once, at the first step.
    np.testing.assert_array_equal(step0["0.weight"], initial.numpy())
    assert "0.weight" not in step1 and "gradient/0.weight" in step1
    # After the last recorded step nothing is left on the model or the optimiser.
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    assert not loss_fn._forward_hooks and not optimiser._optimizer_step_pre_hooks
    assert torch._C._len_torch_function_stack() == 0


def test_the_hook_changes_no_result(tmp_path):
    def run(hooked: bool) -> list[float]:
        torch.manual_seed(0)
        model, loss_fn = classifier(), nn.CrossEntropyLoss()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        if hooked:
            poorinit.torch.hook(model, tmp_path / "t", loss_fn=loss_fn, optimizer=optimiser, steps=4)
        return plain_loop(model, loss_fn, optimiser, batches(6))

    assert run(hooked=True) == run(hooked=False)


def test_validation_passes_between_steps_are_not_recorded(tmp_path):
    torch.manual_seed(0)
    model, loss_fn = classifier(), nn.CrossEntropyLoss()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    poorinit.torch.hook(model, tmp_path / "t", loss_fn=loss_fn, steps=2)
    for x, y in batches(3):
        optimiser.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            loss_fn(model(torch.randn(100, 8)), torch.zeros(100, dtype=torch.long))  # validation
    step0 = read(tmp_path / "t", 0)
    assert step0["1.relu_input"].shape == (8, 16)  # the training batch only, one call
    assert Trial(tmp_path / "t").steps() == [0, 1]


def test_gradient_accumulation_is_one_step_with_the_mean_loss(tmp_path):
    torch.manual_seed(0)
    model, loss_fn = classifier(), nn.CrossEntropyLoss()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    poorinit.torch.hook(model, tmp_path / "t", loss_fn=loss_fn, steps=1)
    losses = []
    for x, y in batches(2):  # two micro-batches, one optimiser step
        loss = loss_fn(model(x), y)
        (loss / 2).backward()
        losses.append(loss.item())
    optimiser.step()
    step0 = read(tmp_path / "t", 0)
    np.testing.assert_allclose(step0["loss"], np.mean(losses), rtol=1e-6)
    assert {"1.call0.relu_input", "1.call1.relu_input", "3.call0.tanh_input", "3.call1.tanh_input"} <= set(step0)


def test_a_later_first_step_holds_the_weights_its_forward_saw(tmp_path):
    """A step opens at the model's first forward: its weights are those after the previous update."""
    torch.manual_seed(0)
    model, loss_fn = classifier(), nn.CrossEntropyLoss()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    initial = model[0].weight.detach().clone()
    poorinit.torch.hook(model, tmp_path / "t", loss_fn=loss_fn, steps=[1])
    first_gradient = None
    for x, y in batches(3):
        optimiser.zero_grad()
        loss_fn(model(x), y).backward()
        first_gradient = model[0].weight.grad.clone() if first_gradient is None else first_gradient
        optimiser.step()
    step1 = read(tmp_path / "t", 1)
    np.testing.assert_allclose(step1["0.weight"], (initial - 0.1 * first_gradient).numpy(), rtol=1e-5, atol=1e-7)


def test_steps_counted_by_backward_passes(tmp_path):
    torch.manual_seed(0)
    model, loss_fn = classifier(), nn.CrossEntropyLoss()
    hook = poorinit.torch.hook(model, tmp_path / "t", loss_fn=loss_fn, count="backward", steps=[1, 2])
    with torch.no_grad():
        before = model[0].weight.clone()
    gradients = []
    for x, y in batches(4):  # no optimiser at all: a hand-written update
        model.zero_grad()
        loss_fn(model(x), y).backward()
        gradients.append(model[0].weight.grad.clone())
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    assert Trial(tmp_path / "t").steps() == [1, 2] and hook.done
    step1, step2 = read(tmp_path / "t", 1), read(tmp_path / "t", 2)
    # Step 1 opened at the forward after the first hand-written update.
    np.testing.assert_allclose(step1["0.weight"], (before - 0.1 * gradients[0]).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(step1["gradient/0.weight"], gradients[1].numpy())
    np.testing.assert_array_equal(step2["gradient/0.weight"], gradients[2].numpy())


def test_a_loss_computed_by_a_function_is_handed_over(tmp_path):
    torch.manual_seed(0)
    model = classifier()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    hook = poorinit.torch.hook(model, tmp_path / "t", steps=2, num_classes=3)
    for x, y in batches(2):
        optimiser.zero_grad()
        loss = F.cross_entropy(model(x), y)
        hook.loss(loss)
        loss.backward()
        optimiser.step()
    assert Trial(tmp_path / "t").steps() == [0, 1]
    with pytest.raises(TypeError, match="loss_fn must be an nn.Module"):
        poorinit.torch.hook(model, tmp_path / "u", loss_fn=F.cross_entropy)


def test_a_step_without_a_loss_is_an_error_at_the_optimisers_step(tmp_path):
    model = classifier()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    poorinit.torch.hook(model, tmp_path / "t", steps=2)  # no loss_fn, no hook.loss
    x, y = batches(1)[0]
    F.cross_entropy(model(x), y).backward()
    with pytest.raises(RecordingError, match="step 0: no loss was recorded"):
        optimiser.step()


def test_closing_early_marks_the_trial_finished_and_removes_the_hooks(tmp_path):
    torch.manual_seed(0)
    model, loss_fn = classifier(), nn.CrossEntropyLoss()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    with poorinit.torch.hook(model, tmp_path / "t", loss_fn=loss_fn, steps=10) as hook:
        plain_loop(model, loss_fn, optimiser, batches(3))
    assert Trial(tmp_path / "t").steps() == [0, 1, 2] and Trial(tmp_path / "t").finished
    assert hook.done and all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def test_a_hooked_trial_is_judged_and_knows_its_classes(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(*(m for _ in range(4) for m in (nn.Linear(8, 8), nn.ReLU())), nn.Linear(8, 3))
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
    loss_fn = nn.CrossEntropyLoss()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    poorinit.torch.hook(model, tmp_path / "t", loss_fn=loss_fn)
    plain_loop(model, loss_fn, optimiser, batches(12))
    with h5py.File(Trial(tmp_path / "t").step_files(0)[0].path, "r") as f:
        assert f.attrs["num_classes"] == 3
    verdict = poorinit.analyze(tmp_path / "t")
    assert {"activation_variance", "gradient_spread"} <= {c.check for c in verdict.criteria if c.fired}
