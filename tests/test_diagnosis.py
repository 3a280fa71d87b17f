"""The per-layer diagnosis: every column against arrays of known answer, then whole trials.

Each known-answer test builds the smallest array whose figure can be worked
out by hand, and says the arithmetic in its docstring.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poorinit import ArrayTensor, RuleParams, analyze
from poorinit.diagnosis import (
    LayerMeasure,
    StepMeasure,
    WeightFigures,
    build,
    fans,
    feeding_weights,
    measure_activation,
    measure_weight,
)
from poorinit.remedy import kind_from_name

from .conftest import write_synthetic_trial

SAMPLES = Path(__file__).resolve().parent.parent / "sample_trials"


def plus_minus(shape: tuple[int, ...], value: float) -> np.ndarray:
    """Alternating +value, -value: mean 0, std exactly ``value`` (an even count of entries)."""
    flat = np.where(np.arange(int(np.prod(shape))) % 2 == 0, value, -value)
    return flat.reshape(shape)


# ---------------------------------------------------------------- fans, He and Glorot


@pytest.mark.parametrize(
    "shape",
    [(64, 32), (10, 128), (16, 3, 3, 3), (8, 4, 5), (4, 2, 3, 3, 3)],
    ids=["Linear", "Linear-head", "Conv2d", "Conv1d", "Conv3d"],
)
def test_fans_are_pytorchs(shape: tuple[int, ...]) -> None:
    """The same (fan_in, fan_out) as torch.nn.init._calculate_fan_in_and_fan_out."""
    torch = pytest.importorskip("torch")
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert fans(shape) == expected


def test_fans_refuse_fewer_than_two_dimensions() -> None:
    assert fans((128,)) is None


def test_linear_weight_at_the_he_scale_has_he_ratio_one() -> None:
    """Linear(32 -> 64): He std sqrt(2/32) = 0.25, Glorot std sqrt(2/96) = 0.1443."""
    weight = measure_weight("fc.weight", ArrayTensor("fc.weight", plus_minus((64, 32), 0.25)))
    assert (weight.fan_in, weight.fan_out) == (32, 64)
    assert weight.std == pytest.approx(0.25)
    assert weight.he_ratio == pytest.approx(1.0)
    assert weight.glorot_ratio == pytest.approx(0.25 / math.sqrt(2 / 96))


def test_conv2d_weight_ratios_use_the_receptive_field() -> None:
    """Conv2d(3 -> 16, 3x3): fan_in 3*9 = 27, fan_out 16*9 = 144; std 0.1."""
    weight = measure_weight("conv.weight", ArrayTensor("conv.weight", plus_minus((16, 3, 3, 3), 0.1)))
    assert (weight.fan_in, weight.fan_out) == (27, 144)
    assert weight.he_ratio == pytest.approx(0.1 / math.sqrt(2 / 27))
    assert weight.glorot_ratio == pytest.approx(0.1 / math.sqrt(2 / 171))


def test_gradient_std_is_pooled_over_workers() -> None:
    """Two workers' gradients of +-1 and +-3: pooled std sqrt((1 + 9) / 2) = sqrt(5)."""
    weight = measure_weight(
        "fc.weight",
        ArrayTensor("fc.weight", plus_minus((4, 4), 0.5)),
        [ArrayTensor("gradient/fc.weight", plus_minus((4, 4), 1.0)),
         ArrayTensor("gradient/fc.weight", plus_minus((4, 4), 3.0), worker=1)],
    )
    assert weight.gradient_std == pytest.approx(math.sqrt(5))


def test_a_flat_sample_has_a_std_but_no_fan() -> None:
    weight = measure_weight("net.0.weight", ArrayTensor("net.0.weight", plus_minus((128,), 0.01)))
    assert weight.std == pytest.approx(0.01)
    assert weight.he_ratio is None and weight.glorot_ratio is None
    assert "flat sample" in weight.note


# ---------------------------------------------------------------- symmetry


def test_zero_weights_make_every_unit_identical() -> None:
    weight = measure_weight("fc2.weight", ArrayTensor("fc2.weight", np.zeros((64, 32))))
    assert weight.symmetric and weight.identical_units == 64
    assert weight.he_ratio == 0.0


def test_a_constant_weight_is_symmetric_too() -> None:
    assert measure_weight("fc.weight", ArrayTensor("fc.weight", np.full((8, 3), 0.5))).symmetric


def test_random_weights_are_not_symmetric() -> None:
    weight = np.random.default_rng(0).normal(size=(64, 32))
    figures = measure_weight("fc.weight", ArrayTensor("fc.weight", weight))
    assert not figures.symmetric and figures.identical_units == 1


def test_one_duplicated_unit_is_not_called_symmetric() -> None:
    weight = np.random.default_rng(0).normal(size=(4, 3))
    weight[2] = weight[0]
    figures = measure_weight("fc.weight", ArrayTensor("fc.weight", weight))
    assert figures.identical_units == 2 and not figures.symmetric


# ---------------------------------------------------------------- activation columns


def test_dead_units_are_nonpositive_for_every_sample() -> None:
    """4 samples x 3 units: unit 0 always negative, unit 1 positive once, unit 2 always 0.

    Dead: units 0 and 2 (ReLU passes nothing, its gradient is 0 at 0 too) -> 2/3.
    Zeros: the 4 values of unit 2 -> 4/12.
    """
    x = np.array([[-1.0, -2.0, 0.0], [-0.5, 3.0, 0.0], [-2.0, -1.0, 0.0], [-0.1, -0.1, 0.0]])
    figures = measure_activation([ArrayTensor("net.1.relu_input", x)], "relu")
    assert (figures.units, figures.dead_units) == (3, 2)
    assert figures.dead_share == pytest.approx(2 / 3)
    assert figures.zero_share == pytest.approx(4 / 12)


def test_dead_units_pool_the_batch_over_workers() -> None:
    """Unit 1 is negative on worker 0 and positive on worker 1: alive. Unit 0 is dead on both."""
    w0 = ArrayTensor("a.relu_input", np.array([[-1.0, -1.0], [-1.0, -1.0]]))
    w1 = ArrayTensor("a.relu_input", np.array([[-1.0, 2.0]]), worker=1)
    assert measure_activation([w0, w1], "relu").dead_units == 1


def test_dead_units_of_a_convolution_are_per_channel_and_pixel() -> None:
    """(batch 2, channels 2, 2x2): channel 0 negative everywhere, channel 1 positive at one pixel -> 7/8 dead."""
    x = -np.ones((2, 2, 2, 2))
    x[1, 1, 0, 1] = 1.0
    figures = measure_activation([ArrayTensor("c.relu_input", x)], "relu")
    assert (figures.units, figures.dead_units) == (8, 7)


def test_dead_units_read_across_block_boundaries() -> None:
    """A tensor larger than one block: the unit index is kept across blocks."""
    from poorinit.trial import BLOCK_ELEMENTS

    units = 3
    rows = BLOCK_ELEMENTS // units + 5
    x = -np.ones((rows, units), dtype=np.float32)
    x[-1, 1] = 1.0  # in the second block
    figures = measure_activation([ArrayTensor("a.relu_input", x)], "relu")
    assert figures.dead_units == 2


def test_saturated_share_uses_the_criterions_bound() -> None:
    """tanh is flat past |x| = 1.82: of 0, 1, 2, -3 the last two are saturated -> 1/2. NaN counts as saturated."""
    x = np.array([[0.0, 1.0, 2.0, -3.0]])
    assert measure_activation([ArrayTensor("t.tanh_input", x)], "tanh").saturated_share == pytest.approx(0.5)
    y = np.array([[0.0, np.nan]])
    assert measure_activation([ArrayTensor("t.tanh_input", y)], "tanh").saturated_share == pytest.approx(0.5)


def test_std_and_ratio_to_the_previous_layer() -> None:
    """Layer stds 1, 0.1, 0.1: x prev 0.01 then 1; the second row is where the signal collapses."""
    layers = []
    for index, scale in enumerate([1.0, 0.1, 0.1]):
        name = f"net.{2 * index + 1}.relu_input"
        values = plus_minus((8, 4), scale)
        layers.append(LayerMeasure(name, "relu", None, {}, measure_activation([ArrayTensor(name, values)], "relu")))
    diagnosis = build(StepMeasure(0, tuple(layers), {}, {}), RuleParams())
    assert [r.std for r in diagnosis.rows] == pytest.approx([1.0, 0.1, 0.1])
    assert diagnosis.rows[0].variance_ratio is None
    assert [r.variance_ratio for r in diagnosis.rows[1:]] == pytest.approx([0.01, 1.0])
    assert [r.mark for r in diagnosis.rows] == ["", "collapse", ""]


def test_growth_is_marked_explode() -> None:
    layers = []
    for index, scale in enumerate([1.0, 2.0, 8.0]):
        name = f"net.{2 * index + 1}.relu_input"
        values = plus_minus((8, 4), scale)
        layers.append(LayerMeasure(name, "relu", None, {}, measure_activation([ArrayTensor(name, values)], "relu")))
    diagnosis = build(StepMeasure(0, tuple(layers), {}, {}), RuleParams())
    assert [r.mark for r in diagnosis.rows] == ["", "", "explode"]  # 64 > 1 * 10 at the third layer


def test_order_attribute_wins_over_names() -> None:
    def layer(name: str, order: int | None) -> LayerMeasure:
        values = plus_minus((2, 2), 1.0)
        return LayerMeasure(name, "relu", order, {}, measure_activation([ArrayTensor(name, values)], "relu"))

    ordered = build(StepMeasure(0, (layer("b.relu_input", 0), layer("a.relu_input", 1)), {}, {}), RuleParams())
    assert [r.name for r in ordered.rows] == ["b.relu_input", "a.relu_input"]
    assert ordered.ordered_by == "order attribute"
    named = build(StepMeasure(0, (layer("net.10.relu_input", None), layer("net.2.relu_input", None)), {}, {}),
                  RuleParams())
    assert [r.name for r in named.rows] == ["net.2.relu_input", "net.10.relu_input"]
    assert named.ordered_by == "name"


# ---------------------------------------------------------------- layer -> weight


def _weights(**shapes: tuple[int, ...]) -> dict[str, WeightFigures]:
    return {name.replace("_", "."): WeightFigures(name.replace("_", "."), shape, 0.1) for name, shape in shapes.items()}


def _layers(*names: str) -> list[LayerMeasure]:
    figures = measure_activation([ArrayTensor("x", np.ones((2, 2)))], "relu")
    return [LayerMeasure(n, kind_from_name(n), None, {}, figures) for n in names]


def test_an_activation_takes_the_nearest_preceding_linear() -> None:
    weights = {f"net.{i}.weight": WeightFigures(f"net.{i}.weight", (4, 4), 0.1) for i in (0, 2, 10)}
    chosen = feeding_weights(_layers("net.1.relu_input", "net.3.relu_input", "net.11.relu_input"), weights, {})
    assert chosen == {"net.1.relu_input": "net.0.weight", "net.3.relu_input": "net.2.weight",
                      "net.11.relu_input": "net.10.weight"}


def test_a_norm_layer_between_is_skipped() -> None:
    """net.0 Linear, net.1 BatchNorm1d (1-D weight), net.2 ReLU: the ReLU belongs to net.0."""
    weights = {"net.0.weight": WeightFigures("net.0.weight", (4, 4), 0.1),
               "net.1.weight": WeightFigures("net.1.weight", (4,), 1.0)}
    assert feeding_weights(_layers("net.2.relu_input"), weights, {}) == {"net.2.relu_input": "net.0.weight"}


def test_the_module_attribute_decides_what_is_a_weight_layer() -> None:
    weights = {"net.0.weight": WeightFigures("net.0.weight", (4, 4), 0.1),
               "net.1.weight": WeightFigures("net.1.weight", (4, 4), 1.0)}
    attrs = {"net.0.weight": {"module": "Linear"}, "net.1.weight": {"module": "Embedding"}}
    assert feeding_weights(_layers("net.2.relu_input"), weights, attrs) == {"net.2.relu_input": "net.0.weight"}


def test_functional_calls_take_their_callers_weights_in_turn() -> None:
    """F.relu(self.fc1(x)), then F.relu(self.fc2(...)) in the root module: names say nothing, order does."""
    weights = {f"fc{i}.weight": WeightFigures(f"fc{i}.weight", (4, 4), 0.1) for i in (1, 2, 3)}
    figures = measure_activation([ArrayTensor("x", np.ones((2, 2)))], "relu")
    layers = [LayerMeasure(name, "relu", order, {"module": ""}, figures)
              for order, name in enumerate(["call0.relu_input", "call1.relu_input"])]
    assert feeding_weights(layers, weights, {}) == {"call0.relu_input": "fc1.weight", "call1.relu_input": "fc2.weight"}


def test_kind_from_name() -> None:
    assert kind_from_name("net.1.relu_input") == "relu"
    assert kind_from_name("block.leaky_relu_input.2") == "leaky_relu"
    assert kind_from_name("net.call1.tanh_input") == "tanh"
    assert kind_from_name("net.0.weight") is None


# ---------------------------------------------------------------- whole trials


def test_vanishing_trial_is_marked_collapse_with_he(tmp_path: Path) -> None:
    trial = write_synthetic_trial(tmp_path / "t", layer_scale=lambda i: 0.1**i, gradient_scale=1e-5,
                                  loss=lambda s: 0.693)
    verdict = analyze(trial, explain=True)
    assert verdict.diagnosis is not None
    assert [r.mark for r in verdict.diagnosis.rows] == ["", "collapse", "", ""]
    fired = {c.check: c for c in verdict.criteria if c.fired}
    assert 'kaiming_normal_(w, nonlinearity="relu")' in (fired["activation_variance"].remedy or "")
    assert "shrinks" in (fired["activation_variance"].remedy or "")


def test_a_passing_criterion_has_no_remedy(healthy_trial: Path) -> None:
    verdict = analyze(healthy_trial)
    assert verdict.diagnosis is None
    assert all(c.remedy is None for c in verdict.criteria if not c.fired)


def test_tiny_relu_probe_collapses_and_gets_he() -> None:
    verdict = analyze(SAMPLES / "probe-tiny-relu", explain=True)
    assert verdict.diagnosis is not None
    marked = verdict.diagnosis.marked
    assert marked and marked[0].mark == "collapse"
    remedy = next(c.remedy for c in verdict.criteria if c.check == "activation_variance")
    assert remedy and 'kaiming_normal_(w, nonlinearity="relu")' in remedy and "scale the weights up" in remedy


def test_large_tanh_probe_saturates_and_gets_xavier() -> None:
    verdict = analyze(SAMPLES / "probe-large-tanh", explain=True)
    assert verdict.diagnosis is not None
    assert {r.mark for r in verdict.diagnosis.rows} == {"saturated"}
    remedy = next(c.remedy for c in verdict.criteria if c.check == "saturation")
    assert remedy and 'xavier_normal_(w, gain=nn.init.calculate_gain("tanh"))' in remedy


def test_zeros_moon_is_symmetric() -> None:
    verdict = analyze(SAMPLES / "moon-zeros", explain=True)
    assert verdict.diagnosis is not None
    assert "symmetric: all 64 units of net.2 are identical" in verdict.diagnosis.findings
    assert all(r.mark == "symmetric" for r in verdict.diagnosis.rows)
    for c in verdict.criteria:
        if c.fired:
            assert c.remedy and c.remedy.startswith("break the symmetry")


def test_he_moon_has_no_mark() -> None:
    verdict = analyze(SAMPLES / "moon-he", explain=True)
    assert verdict.diagnosis is not None and not verdict.diagnosis.marked
    hidden = verdict.diagnosis.rows[1].weight
    assert hidden is not None and hidden.name == "net.2.weight" and hidden.he_ratio == pytest.approx(1.0, abs=0.1)


def test_the_json_verdict_carries_the_diagnosis_and_remedies() -> None:
    """Through the installed command, as a CI job runs it."""
    run = subprocess.run(
        [sys.executable, "-m", "poorinit", "analyze", str(SAMPLES / "moon-tiny"), "--explain", "--format", "json"],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 1, run.stderr
    document = json.loads(run.stdout)
    assert document["schema_version"] == 1
    layers = document["diagnosis"]["layers"]
    assert [layer["name"] for layer in layers] == ["net.1.relu_input", "net.3.relu_input"]
    assert layers[1]["mark"] == "collapse"
    assert layers[1]["weight"]["shape"] == [64, 64]
    assert layers[1]["weight"]["he_std"] == pytest.approx(math.sqrt(2 / 64))
    fired = [c for c in document["criteria"] if c["status"] == "fired"]
    assert fired and all(c["remedy"] for c in fired)


def test_without_explain_the_json_has_remedies_and_a_null_diagnosis() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "poorinit", "analyze", str(SAMPLES / "moon-zeros"), "--format", "json"],
        capture_output=True, text=True, check=False,
    )
    document = json.loads(run.stdout)
    assert document["diagnosis"] is None
    assert all(c["remedy"] for c in document["criteria"] if c["status"] == "fired")


def test_explain_prints_the_table_under_the_verdict() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "poorinit", "analyze", str(SAMPLES / "moon-zeros"), "--explain"],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 1
    assert "per-layer diagnosis at step 0" in run.stdout
    assert "symmetric: all 64 units of net.2 are identical" in run.stdout
    assert "remedy: break the symmetry" in run.stdout
