"""Activations the model calls as functions (F.relu, torch.tanh, x.relu_()), and what the recorder says about each.

Real models, real training steps: a stack of nn.TransformerEncoderLayer (ReLU
and GELU), an LSTM and a GRU, a hand-written functional MLP. The metadata of
docs/format.md ("Optional attributes") is read back from the step files.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import poorinit  # noqa: E402
from poorinit import format as fmt  # noqa: E402
from poorinit.torch import Recorder, RecordingWarning  # noqa: E402
from poorinit.trial import Trial  # noqa: E402


def plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def step_file(trial: Path, step: int = 0) -> Path:
    (path,) = Trial(trial).step_files(step)
    return Path(path.path)


def activation_inputs(trial: Path, step: int = 0) -> dict[str, dict[str, Any]]:
    """name -> attributes (collections left out) of every activation input of a step, read with h5py."""
    found: dict[str, dict[str, Any]] = {}
    with h5py.File(step_file(trial, step), "r") as f:

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and plain(obj.attrs.get("collections")) == fmt.ACTIVATION_INPUTS:
                found[name] = {k: plain(v) for k, v in obj.attrs.items() if k != "collections"}

        f[fmt.TENSOR_GROUP].visititems(visit)
    return found


def tensor_values(trial: Path, name: str, step: int = 0) -> np.ndarray:
    with h5py.File(step_file(trial, step), "r") as f:
        return f[fmt.TENSOR_GROUP][name][()]


def record(
    model: nn.Module,
    trial: Path,
    batch: Any,
    *,
    steps: int = 1,
    loss_fn: Any = None,
    targets: Any = None,
    **options: Any,
) -> list[float]:
    """Train ``steps`` SGD steps under a Recorder; returns the losses (to compare runs)."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = loss_fn or (lambda out: out.float().pow(2).mean())
    losses = []
    with Recorder(model, trial, steps=steps, **options) as rec:
        for _ in range(steps):
            with rec.step():
                out = model(batch)
                loss = loss_fn(out) if targets is None else loss_fn(out, targets)
                optimiser.zero_grad()
                loss.backward()
                rec.loss(loss)
                optimiser.step()
                losses.append(loss.item())
    return losses


# -- transformers --------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self, activation: str, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation=activation, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_a_transformer_encoder_stack_records_each_layers_activation(tmp_path, activation):
    torch.manual_seed(0)
    record(Encoder(activation), tmp_path / "t", torch.randn(4, 5, 8))
    found = activation_inputs(tmp_path / "t")
    expected = {}
    for i in range(2):
        # Each layer runs its attention first (the softmax over the logits of
        # nn.MultiheadAttention, computed inside one function), then its feed-forward block.
        expected[f"encoder.layers.{i}.self_attn.softmax_input"] = {
            "activation": "softmax", "order": 2 * i, "module": f"encoder.layers.{i}.self_attn",
        }
        expected[f"encoder.layers.{i}.{activation}_input"] = {
            "activation": activation,
            "order": 2 * i + 1,
            "module": f"encoder.layers.{i}",
            "after": "Linear",  # linear1 feeds the activation of the feed-forward block
        }
    assert found == expected
    assert tensor_values(tmp_path / "t", f"encoder.layers.0.{activation}_input").shape == (4, 5, 32)
    # (batch, heads, queries, keys): one softmax row per query.
    assert tensor_values(tmp_path / "t", "encoder.layers.0.self_attn.softmax_input").shape == (4, 2, 5, 5)


def test_recording_changes_no_result_of_a_transformer(tmp_path):
    """The function mode passes every call through: the losses of a recorded run are the
    unrecorded run's, bit for bit."""
    batch = torch.randn(4, 5, 8)

    torch.manual_seed(0)
    recorded = record(Encoder("relu"), tmp_path / "t", batch, steps=3)
    torch.manual_seed(0)
    model = Encoder("relu")
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    plain_losses = []
    for _ in range(3):
        loss = model(batch).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        plain_losses.append(loss.item())
    assert recorded == plain_losses
    assert Trial(tmp_path / "t").steps() == [0, 1, 2]


def test_in_inference_the_function_mode_turns_the_fast_path_off_and_sees_the_activation():
    from poorinit.torch.functional import FunctionalCapture

    torch.manual_seed(0)
    encoder = Encoder("relu").eval()
    batch = torch.randn(4, 5, 8)
    seen: list[str] = []
    with torch.no_grad():
        fast = encoder(batch)  # eval + no_grad: PyTorch's fused fast path
        with FunctionalCapture(lambda kind, *_: seen.append(kind), lambda classes: None):
            normal = encoder(batch)
    assert seen == ["softmax", "relu", "softmax", "relu"]
    torch.testing.assert_close(normal, fast, rtol=0, atol=1e-5)


# -- softmax and attention -------------------------------------------------------


def test_attention_logits_are_the_ones_multihead_attention_turns_into_its_weights(tmp_path):
    """The recorded logits of nn.MultiheadAttention, through a softmax, are the layer's own attention weights."""
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(16, 4, bias=True, batch_first=True)
    nn.init.normal_(attention.in_proj_bias, 0.0, 0.5)  # biases matter: they shift queries and keys

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = attention

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x, need_weights=False)[0]

    x = torch.randn(3, 6, 16)
    _, weights = attention(x, x, x, need_weights=True, average_attn_weights=False)  # before the step updates it
    record(Net(), tmp_path / "t", x)
    logits = tensor_values(tmp_path / "t", "attn.softmax_input")
    assert logits.shape == (3, 4, 6, 6)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), -1).numpy(), weights.detach().numpy(),
                               rtol=1e-5, atol=1e-6)


class SDPABlock(nn.Module):
    """Attention as most code writes it now: one call to the fused kernel, causal, with grouped key heads."""

    def __init__(self, d: int = 16, heads: int = 4, kv_heads: int = 2) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, d // heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * kv_heads * self.head_dim)

    def split(self, t: torch.Tensor, heads: int) -> torch.Tensor:
        return t.reshape(t.shape[0], t.shape[1], heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.split(self.q(x), self.heads)
        k, v = (self.split(t, self.kv_heads) for t in self.kv(x).chunk(2, dim=-1))
        self.seen = (q.detach(), k.detach())
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return out.transpose(1, 2).reshape(x.shape)


def test_scaled_dot_product_attention_records_its_scaled_logits_unmasked(tmp_path):
    torch.manual_seed(0)
    block = SDPABlock()
    record(block, tmp_path / "t", torch.randn(2, 5, 16))
    logits = tensor_values(tmp_path / "t", "softmax_input")
    q, k = block.seen
    expected = q @ k.repeat_interleave(2, dim=1).transpose(-2, -1) / 2.0  # scale 1/sqrt(head_dim=4)
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert activation_inputs(tmp_path / "t")["softmax_input"] == {"activation": "softmax", "order": 0, "module": ""}


def test_a_softmax_over_another_axis_is_stored_with_that_axis_last(tmp_path):
    class Gate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scores = self.proj(x)  # (batch, positions, features): a softmax over positions
            self.scores = scores.detach()
            return (torch.softmax(scores, dim=1) * x).sum(dim=1)

    torch.manual_seed(0)
    gate = Gate()
    record(gate, tmp_path / "t", torch.randn(3, 7, 4))
    stored = tensor_values(tmp_path / "t", "softmax_input")
    np.testing.assert_array_equal(stored, gate.scores.movedim(1, -1).numpy())


def test_a_large_transformer_start_saturates_its_attention_and_the_rule_says_where(tmp_path):
    """Every layer normalised, so variances are even; the logits q.k are not, and every head starts one-hot."""
    torch.manual_seed(0)
    model = Encoder("gelu", classes=4)
    for p in model.parameters():
        if p.ndim == 2:
            nn.init.normal_(p, 0.0, 1.0)
    record(model, tmp_path / "large", torch.randn(16, 8, 8), steps=2, loss_fn=F.cross_entropy,
           targets=torch.randint(0, 4, (16,)))
    verdict = poorinit.analyze(tmp_path / "large")
    saturation = next(c for c in verdict.criteria if c.check == "saturation")
    assert saturation.fired and saturation.tensor.endswith("self_attn.softmax_input"), saturation.reason
    assert "softmax is saturated" in saturation.reason
    assert "query and key projections" in saturation.remedy

    torch.manual_seed(0)
    record(Encoder("gelu", classes=4), tmp_path / "default", torch.randn(16, 8, 8), steps=2,
           loss_fn=F.cross_entropy, targets=torch.randint(0, 4, (16,)))
    healthy = next(c for c in poorinit.analyze(tmp_path / "default").criteria if c.check == "saturation")
    assert healthy.status is poorinit.Status.PASSED and healthy.figure < 0.05, healthy.reason


# -- recurrent networks ----------------------------------------------------------


class Recurrent(nn.Module):
    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.rnn = cell(8, 16, num_layers=2, batch_first=True)
        self.fc = nn.Linear(16, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rnn(x)[0][:, -1]
        return self.head(F.relu(self.fc(out)))


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_recurrent_gates_are_not_seen_and_the_recorder_says_so(tmp_path, cell):
    torch.manual_seed(0)
    with pytest.warns(RecordingWarning, match=rf"the gates of rnn \({cell.__name__}\) run inside PyTorch's fused"):
        record(Recurrent(cell), tmp_path / "t", torch.randn(4, 6, 8), steps=2)
    # What the rule does see: the activations around the recurrent layers.
    assert activation_inputs(tmp_path / "t") == {
        "relu_input": {"activation": "relu", "order": 0, "module": "", "after": "Linear"}
    }


def test_a_model_of_recurrent_layers_alone_warns_twice_and_analyze_says_why(tmp_path):
    class OnlyLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(8, 8, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[0][:, -1, :3]

    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record(OnlyLSTM(), tmp_path / "t", torch.randn(4, 6, 8), steps=3)
    messages = [str(w.message) for w in caught if issubclass(w.category, RecordingWarning)]
    assert len(messages) == 2 and "lstm (LSTM)" in messages[0] and "no activation input was recorded" in messages[1]
    verdict = poorinit.analyze(tmp_path / "t", steps=3)
    activation = next(c for c in verdict.criteria if c.check == "activation_variance")
    assert activation.status.value == "not_applicable"
    assert "no activation input was recorded" in activation.reason


# -- a hand-written functional MLP, in-place variants, counting -------------------


class FunctionalMLP(nn.Module):
    """Weights as parameters, activations as functions: no activation module at all."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(16, 16) / 4) for _ in range(9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = iter(self.weights)
        x = F.relu(x @ next(w))
        x = F.leaky_relu(x @ next(w), negative_slope=0.2)
        x = F.gelu(x @ next(w))
        x = F.silu(x @ next(w))
        x = torch.tanh(x @ next(w))
        x = torch.sigmoid(x @ next(w))
        x = F.softplus(x @ next(w))
        x = F.elu(x @ next(w))
        return x @ next(w)


def test_a_functional_mlp_records_every_function_in_call_order(tmp_path):
    torch.manual_seed(0)
    record(FunctionalMLP(), tmp_path / "t", torch.randn(8, 16))
    found = activation_inputs(tmp_path / "t")
    kinds = ["relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid", "softplus", "elu"]
    assert list(sorted(found, key=lambda n: found[n]["order"])) == [f"{k}_input" for k in kinds]
    assert [found[f"{k}_input"]["order"] for k in kinds] == list(range(8))
    assert found["leaky_relu_input"]["negative_slope"] == pytest.approx(0.2)
    assert all("negative_slope" not in found[f"{k}_input"] for k in kinds if k != "leaky_relu")
    # Matrix products come from no module: nothing to say what the inputs come after.
    assert all("after" not in attrs and attrs["module"] == "" for attrs in found.values())


# -- how long the function mode is held ------------------------------------------


class Counting(torch.overrides.TorchFunctionMode):
    """Counts the torch calls a loop makes while it is the innermost mode (a TorchFunctionMode of the loop's own)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def test_the_function_mode_ends_at_rec_loss_and_spans_the_forwards_only_after_the_first_step(tmp_path):
    """At the first recorded step the mode runs from the step's start to rec.loss() (the loss computed
    outside the model gives K); at later ones, each forward of the model only, and K is carried over."""
    torch.manual_seed(0)
    model = FunctionalMLP()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    depths = []

    def probe(module, args, output):
        depths.append(("in forward", torch._C._len_torch_function_stack()))

    model.register_forward_hook(probe)  # registered before the recorder's, so it runs inside the span
    with Recorder(model, tmp_path / "t", steps=3) as rec:
        for _ in range(3):
            with rec.step():
                depths.append(("start", torch._C._len_torch_function_stack()))
                optimiser.zero_grad()
                loss = F.cross_entropy(model(torch.randn(8, 16)), torch.randint(0, 16, (8,)))
                depths.append(("after the loss", torch._C._len_torch_function_stack()))
                loss.backward()
                rec.loss(loss)
                depths.append(("after rec.loss", torch._C._len_torch_function_stack()))
                optimiser.step()
    first = [("start", 1), ("in forward", 1), ("after the loss", 1), ("after rec.loss", 0)]
    later = [("start", 0), ("in forward", 1), ("after the loss", 0), ("after rec.loss", 0)]
    assert depths == first + later + later
    for step in range(3):
        assert len(activation_inputs(tmp_path / "t", step)) == 8
        assert root_attrs(tmp_path / "t", step)["num_classes"] == 16  # the logits' width


def test_a_forward_after_rec_loss_is_still_seen(tmp_path):
    """Gradient accumulation with rec.loss() per micro-batch: the model's next forward enters the mode again."""
    torch.manual_seed(0)
    model = FunctionalMLP()
    with Recorder(model, tmp_path / "t", steps=1) as rec, rec.step():
        for _ in range(2):
            loss = model(torch.randn(8, 16)).pow(2).mean()
            loss.backward()
            rec.loss(loss)
    found = activation_inputs(tmp_path / "t")
    assert len(found) == 16  # eight functions, called twice each: numbered calls
    assert {attrs["order"] for attrs in found.values()} == set(range(16))


def test_a_mode_the_loop_enters_after_rec_loss_is_left_alone_and_the_recorder_warns(tmp_path):
    torch.manual_seed(0)
    model = FunctionalMLP()
    counting = Counting()
    with Recorder(model, tmp_path / "t", steps=1) as rec, rec.step():
        loss = model(torch.randn(8, 16)).pow(2).mean()
        loss.backward()
        rec.loss(loss)
        with counting, pytest.warns(RecordingWarning, match="after rec.loss"):
            model(torch.randn(8, 16))
        assert torch._C._len_torch_function_stack() == 0  # the loop's mode popped itself, not ours
    assert counting.calls > 0
    assert len(activation_inputs(tmp_path / "t")) == 8  # the first forward's


def test_rec_loss_inside_a_mode_of_the_loop_keeps_the_recorders_until_the_step_ends(tmp_path):
    torch.manual_seed(0)
    model = FunctionalMLP()
    counting = Counting()
    with Recorder(model, tmp_path / "t", steps=1) as rec:
        with rec.step():
            with counting:
                loss = model(torch.randn(8, 16)).pow(2).mean()
                loss.backward()
                rec.loss(loss)  # the loop's mode is innermost: the recorder's stays entered
                assert torch._C._len_torch_function_stack() == 2
            assert torch._C._len_torch_function_stack() == 1
        assert torch._C._len_torch_function_stack() == 0
    assert len(activation_inputs(tmp_path / "t")) == 8


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = iter(self.layers)
        x = next(layers)(x).relu_()
        x = torch.relu_(next(layers)(x))
        x = F.relu(next(layers)(x), inplace=True)
        x = next(layers)(x).tanh_()
        x = next(layers)(x).sigmoid_()
        x = F.elu(next(layers)(x), inplace=True)
        x = F.leaky_relu(next(layers)(x), 0.1, inplace=True)
        return x


def test_in_place_functions_are_recorded_before_they_overwrite_their_input(tmp_path):
    torch.manual_seed(0)
    model = InPlace()
    # Each in-place activation overwrites the output of the Linear before it: clone that output as it is made.
    made = {}
    for index, layer in enumerate(model.layers):
        layer.register_forward_hook(lambda m, args, out, index=index: made.__setitem__(index, out.detach().clone()))
    record(model, tmp_path / "t", torch.randn(32, 16))
    found = activation_inputs(tmp_path / "t")
    assert sorted(found) == [
        "call0.relu_input", "call1.relu_input", "call2.relu_input",
        "elu_input", "leaky_relu_input", "sigmoid_input", "tanh_input",
    ]  # fmt: skip
    for name, attrs in found.items():
        assert attrs["after"] == "Linear"
        np.testing.assert_array_equal(tensor_values(tmp_path / "t", name), made[attrs["order"]].numpy(), err_msg=name)
    assert (tensor_values(tmp_path / "t", "call0.relu_input") < 0).any()


def test_a_module_calling_a_function_several_times_gets_numbered_calls(tmp_path):
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for fc in self.fc:
                x = F.relu(fc(x))
            return torch.tanh(x)

    model = nn.Sequential(nn.Linear(8, 8), Block(), nn.Linear(8, 2))
    torch.manual_seed(0)
    record(model, tmp_path / "t", torch.randn(4, 8))
    found = activation_inputs(tmp_path / "t")
    assert {name: attrs["order"] for name, attrs in found.items()} == {
        "1.call0.relu_input": 0,
        "1.call1.relu_input": 1,
        "1.call2.relu_input": 2,
        "1.tanh_input": 3,
    }
    assert {attrs["module"] for attrs in found.values()} == {"1"}
    # SageMaker's default regex still selects every call.
    verdict = poorinit.analyze(tmp_path / "t", steps=1)
    activation = next(c for c in verdict.criteria if c.check == "activation_variance")
    assert activation.status.value != "not_applicable", activation.reason


def test_activation_modules_are_recorded_once_though_they_call_functions(tmp_path):
    """nn.ReLU calls F.relu, nn.Tanh torch.tanh...: the module's hook records it, the function mode does not again."""
    modules = [nn.ReLU(), nn.LeakyReLU(0.3), nn.GELU(), nn.SiLU(), nn.Tanh(), nn.Sigmoid(), nn.Softplus(), nn.ELU()]
    model = nn.Sequential(*(m for module in modules for m in (nn.Linear(8, 8), module)))
    torch.manual_seed(0)
    record(model, tmp_path / "t", torch.randn(4, 8))
    found = activation_inputs(tmp_path / "t")
    kinds = ["relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid", "softplus", "elu"]
    assert found == {
        f"{2 * i + 1}.{kind}_input": {
            "activation": kind,
            "order": i,
            "module": str(2 * i + 1),
            "after": "Linear",
            **({"negative_slope": pytest.approx(0.3)} if kind == "leaky_relu" else {}),
        }
        for i, kind in enumerate(kinds)
    }


def test_functions_outside_the_models_forward_are_not_layers(tmp_path):
    """A sigmoid in the loss, a relu in the training loop: not part of the network the rule judges."""
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    torch.manual_seed(0)
    record(model, tmp_path / "t", torch.randn(4, 8), loss_fn=lambda out: torch.sigmoid(F.relu(out)).mean())
    assert set(activation_inputs(tmp_path / "t")) == {"1.relu_input"}


# -- normalisation layers: ``after`` ------------------------------------------------


class RMSNormLike(nn.Module):
    """A hand-written normalisation: its class name is what ``after`` says."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


@pytest.mark.parametrize(
    "norm, name",
    [
        (lambda: nn.BatchNorm1d(8), "BatchNorm1d"),
        (lambda: nn.LayerNorm(8), "LayerNorm"),
        (lambda: nn.GroupNorm(2, 8), "GroupNorm"),
        (lambda: nn.RMSNorm(8), "RMSNorm"),
        (RMSNormLike, "RMSNormLike"),
    ],
)
def test_activation_inputs_after_a_normalisation_layer_say_so(tmp_path, norm, name):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 8), norm(), nn.ReLU())  # a module activation
            self.fc = nn.Linear(8, 8)
            self.norm = norm()
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(F.gelu(self.norm(self.fc(self.body(x)))))  # a functional one

    torch.manual_seed(0)
    record(Net(), tmp_path / "t", torch.randn(6, 8))
    found = activation_inputs(tmp_path / "t")
    assert found["body.2.relu_input"]["after"] == name
    assert found["gelu_input"]["after"] == name


def test_after_names_the_innermost_producer_and_nothing_for_arithmetic(tmp_path):
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.inner(x)  # the Sequential returns its last Linear's output
            return self.act(x + y) + F.relu(y)

    torch.manual_seed(0)
    record(Residual(), tmp_path / "t", torch.randn(4, 8))
    found = activation_inputs(tmp_path / "t")
    assert found["inner.1.tanh_input"]["after"] == "Linear"
    assert "after" not in found["act.relu_input"]  # x + y: made by no module
    assert found["relu_input"]["after"] == "Linear"


# -- num_classes ---------------------------------------------------------------------


def root_attrs(trial: Path, step: int = 0) -> dict[str, Any]:
    with h5py.File(step_file(trial, step), "r") as f:
        return {k: plain(v) for k, v in f.attrs.items()}


def classifier(classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, classes))


def test_num_classes_is_known_from_a_cross_entropy_or_nll_loss(tmp_path):
    batch, targets = torch.randn(6, 8), torch.randint(0, 5, (6,))
    record(classifier(5), tmp_path / "ce", batch, loss_fn=F.cross_entropy, targets=targets)
    record(classifier(5), tmp_path / "module", batch, loss_fn=nn.CrossEntropyLoss(), targets=targets)
    record(
        classifier(5), tmp_path / "nll", batch, loss_fn=lambda out, y: F.nll_loss(F.log_softmax(out, 1), y),
        targets=targets,
    )
    for name in ("ce", "module", "nll"):
        assert root_attrs(tmp_path / name)["num_classes"] == 5, name


def test_num_classes_is_left_out_when_unknown_and_the_user_can_say_it(tmp_path):
    batch = torch.randn(6, 8)
    record(classifier(5), tmp_path / "mse", batch)
    assert "num_classes" not in root_attrs(tmp_path / "mse")
    record(classifier(5), tmp_path / "said", batch, num_classes=7)
    assert root_attrs(tmp_path / "said")["num_classes"] == 7
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        Recorder(classifier(5), tmp_path / "bad", num_classes=1)


# -- weights and gradients: ``module`` --------------------------------------------


def test_weights_and_gradients_name_their_modules_class(tmp_path):
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 3))
    torch.manual_seed(0)
    record(model, tmp_path / "t", torch.randn(5, 2, 8))
    with h5py.File(step_file(tmp_path / "t"), "r") as f:
        tensors = f[fmt.TENSOR_GROUP]
        for name, cls in (("0.weight", "Conv1d"), ("1.bias", "BatchNorm1d"), ("4.weight", "Linear")):
            assert plain(tensors[name].attrs["module"]) == cls
            assert plain(tensors[f"gradient/{name}"].attrs["module"]) == cls
        # Strings are fixed-length: they sit in the checksummed object header (docs/format.md).
        string = h5py.check_string_dtype(tensors["0.weight"].attrs.get_id("module").dtype)
        assert string is not None and string.length is not None


# -- warnings -------------------------------------------------------------------------


def test_a_step_without_activation_inputs_warns_once(tmp_path):
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))  # linear all the way: nothing to record
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record(model, tmp_path / "t", torch.randn(4, 8), steps=3)
    messages = [str(w.message) for w in caught if issubclass(w.category, RecordingWarning)]
    assert messages == [
        "step 0: no activation input was recorded: the model ran no activation module or function the recorder "
        "knows inside the step, so the rule cannot judge the activations (see docs/recording.md, "
        "'Functional activations')"
    ]
    assert Trial(tmp_path / "t").steps() == [0, 1, 2]


def test_the_metadata_round_trips_through_poorinits_reader(tmp_path):
    """What the recorder writes, the rule reads: Tensor.attrs and the step reader's attrs (contract 2)."""
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.LeakyReLU(0.1), nn.Linear(8, 3))
    torch.manual_seed(0)
    record(model, tmp_path / "t", torch.randn(4, 8), loss_fn=F.cross_entropy, targets=torch.randint(0, 3, (4,)))
    trial = Trial(tmp_path / "t")
    (step_file,) = trial.step_files(0)
    with trial.open(step_file) as reader:
        assert reader.attrs["num_classes"] == 3
        relu = reader.tensor("2.leaky_relu_input").attrs
        assert relu == {"activation": "leaky_relu", "order": 0, "module": "2", "after": "LayerNorm",
                        "negative_slope": pytest.approx(0.1)}  # fmt: skip
        assert reader.tensor("gradient/0.weight").attrs == {"module": "Linear"}


class HandWrittenBlock(nn.Module):
    """Pre-LN attention then MLP, as GPT-style code writes it: torch.softmax and F.gelu called by the block."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        x = x + self.proj(torch.softmax(q @ k.transpose(1, 2) / 4.0, dim=-1) @ v)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def test_the_diagnosis_keeps_the_softmax_out_of_the_depth_chain(tmp_path):
    """A softmax row has no "x prev" and takes no weight; the GELU after it still gets its fc1."""
    torch.manual_seed(0)
    model = nn.Sequential(HandWrittenBlock(), HandWrittenBlock())
    for p in model.parameters():
        if p.ndim == 2:
            nn.init.normal_(p, 0.0, 1.0)  # large: the attention saturates
    record(model, tmp_path / "t", torch.randn(8, 6, 16))
    verdict = poorinit.analyze(tmp_path / "t", explain=True)
    rows = {row.name: row for row in verdict.diagnosis.rows}
    softmax, gelu = rows["0.softmax_input"], rows["0.gelu_input"]
    assert softmax.weight is None and softmax.variance_ratio is None
    assert softmax.saturated_share > 0.5 and softmax.mark == "saturated"
    assert gelu.weight is not None and gelu.weight.name == "0.fc1.weight"
    assert rows["1.gelu_input"].variance_ratio is not None  # against 0.gelu_input, not 1.softmax_input


def test_long_attention_keeps_a_bounded_sample_of_query_rows(tmp_path, monkeypatch):
    """Logits grow as the sequence squared: a recorded call keeps at most MAX_LOGITS, from evenly spaced rows."""
    from poorinit.torch import attention

    monkeypatch.setattr(attention, "MAX_LOGITS", 2 * 4 * 16 * 64)  # a quarter of the 2 x 4 x 64 x 64 logits
    torch.manual_seed(0)
    block = SDPABlock()
    record(block, tmp_path / "t", torch.randn(2, 64, 16))
    logits = tensor_values(tmp_path / "t", "softmax_input")
    q, k = block.seen
    full = (q @ k.repeat_interleave(2, dim=1).transpose(-2, -1) / 2.0).numpy()
    assert logits.shape == (2, 4, 16, 64) and logits.size <= attention.MAX_LOGITS
    np.testing.assert_allclose(logits, full[:, :, ::4, :], rtol=1e-5, atol=1e-6)


def test_an_attention_call_whose_logits_cannot_be_formed_runs_unrecorded():
    """Whatever the recorder fails to understand, the training step itself never breaks."""
    from poorinit.torch.attention import attention_logits

    q = torch.randn(2, 3, 5, 4)
    k = torch.randn(2, 2, 5, 4)  # 2 key heads for 3 query heads: not a grouping sdpa accepts
    assert attention_logits(F.scaled_dot_product_attention, (q, k, k), {"enable_gqa": True}) is None
    odd = torch.randn(2, 2, 5, 3)  # keys of another width than the queries'
    assert attention_logits(F.scaled_dot_product_attention, (q, odd, odd), {}) is None


def test_attention_logits_are_formed_later_from_the_operands_as_they_were(tmp_path):
    """On the CPU the logits are formed on the writer thread, from copies taken at the call: the
    optimiser's update of the projection weights afterwards does not reach them."""
    from poorinit.torch.attention import DeferredLogits, attention_logits
    from poorinit.torch.functional import FunctionalCapture

    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2)
    x = torch.randn(5, 3, 8)
    seen = {}

    def capture(kind, value, args, kwargs):
        seen["logits"] = value

    with FunctionalCapture(capture, lambda k: None):
        attention(x, x, x, need_weights=False)
    deferred = seen["logits"]
    assert isinstance(deferred, DeferredLogits) and deferred.keys == 5
    before = deferred()
    with torch.no_grad():
        attention.in_proj_weight.mul_(3.0)
        x.zero_()
    np.testing.assert_array_equal(deferred().numpy(), before.numpy())
    assert deferred(rows=2).shape == (2, 2, 5, 5)
    assert deferred(rows=1).shape == (1, 2, 5, 5)  # cut as any other activation input is: by leading rows
    # 3 heads do not divide a width of 8: no logits, and the call runs as it would
    assert attention_logits(F.multi_head_attention_forward, (x, x, x, 8, 3, attention.in_proj_weight), {}) is None


# -- data-parallel workers: ``workers`` -------------------------------------------


def _distributed_worker(rank: int, store: str, trial: str, silent_rank: int) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)
        model = classifier(4)
        # The silent rank records no step, as a worker that has not reached its first one yet.
        with Recorder(model, trial, worker=rank, steps=() if rank == silent_rank else 6, background=False) as rec:
            for _ in range(6):
                with rec.step():
                    loss = F.cross_entropy(model(torch.randn(16, 8)), torch.randint(0, 4, (16,)))
                    loss.backward()
                    rec.loss(loss)
    finally:
        torch.distributed.destroy_process_group()


def test_under_torch_distributed_the_trial_declares_its_workers(tmp_path):
    """Rank 1 writes nothing: the trial still says two workers exist, so the verdict says it rests on part."""
    torch.multiprocessing.spawn(_distributed_worker, args=(str(tmp_path / "store"), str(tmp_path / "t"), 1),
                                nprocs=2, join=True)
    assert root_attrs(tmp_path / "t")["workers"] == 2
    verdict = poorinit.analyze(tmp_path / "t")
    assert any("part of the data" in warning for warning in verdict.warnings), verdict.warnings


def test_attention_logits_that_cannot_be_formed_are_left_out_and_said(tmp_path, monkeypatch):
    """A deferred softmax input that fails on the writer's side never breaks the step file, and never goes
    unsaid: the rule would otherwise judge that softmax by nothing without a word."""
    from poorinit.torch.attention import DeferredLogits

    monkeypatch.setattr(DeferredLogits, "__call__", lambda self, rows=None: None)
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(16, 4, batch_first=True)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = attention
            self.fc = nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc(self.attn(x, x, x, need_weights=False)[0]))

    model = Net()
    warned = pytest.warns(RecordingWarning, match="attention logits could not be formed")
    with warned, Recorder(model, tmp_path / "t", steps=1, background=False) as rec, rec.step():
        loss = model(torch.randn(3, 6, 16)).pow(2).mean()
        loss.backward()
        rec.loss(loss)
    assert set(activation_inputs(tmp_path / "t")) == {"relu_input"}  # recorded; the logits left out
