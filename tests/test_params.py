"""Rule parameters: SageMaker's names, defaults and value forms."""

import re

import pytest

from poorinit import ParameterError, RuleParams


def test_defaults_are_sagemakers_but_the_regex_takes_every_relu_like_activation():
    p = RuleParams.from_values()
    assert p.activation_inputs_regex == (".*(relu|relu6|gelu|silu|elu|selu|celu|softplus|mish|hardswish)_input",)
    chosen = re.compile(p.activation_inputs_regex[0])
    # SageMaker's .*relu_input, matched from the start, takes the ReLU family; the default takes it too ...
    for name in ("net.1.relu_input", "a.leaky_relu_input", "b.prelu_input", "layer1_relu_input_0"):
        assert chosen.match(name)
    # ... and the unbounded kinds networks use today; bounded kinds are the saturation criterion's.
    for name in ("mlp.gelu_input", "f.silu_input", "e.elu_input", "s.relu6_input", "m.mish_input"):
        assert chosen.match(name)
    for name in ("net.1.tanh_input", "x.sigmoid_input", "attn.softmax_input", "gradient/relu.weight"):
        assert not chosen.match(name)
    assert (p.threshold, p.distribution_range, p.patience, p.steps) == (10.0, 0.001, 5, 10)
    assert p == RuleParams()


@pytest.mark.parametrize("steps", [10, "10", "10.0", 10.0])
def test_steps_accepts_the_documented_float_form(steps):
    assert RuleParams.from_values(steps=steps).steps == 10


@pytest.mark.parametrize("steps", ["10.5", 0, -1, "ten"])
def test_steps_must_be_a_positive_whole_number(steps):
    with pytest.raises(ParameterError, match="steps"):
        RuleParams.from_values(steps=steps)


def test_regex_list_or_comma_separated_string():
    a = RuleParams.from_values(activation_inputs_regex="a.*, b.*")
    b = RuleParams.from_values(activation_inputs_regex=["a.*", "b.*"])
    assert a.activation_inputs_regex == b.activation_inputs_regex == ("a.*", "b.*")


def test_bad_regex_names_the_parameter():
    with pytest.raises(ParameterError, match=r"gradient_regex: '\(' is not a valid regular expression"):
        RuleParams.from_values(gradient_regex="(")


@pytest.mark.parametrize(
    "bad", [{"threshold": 0.5}, {"distribution_range": -1}, {"patience": 0}, {"mode": "test"}, {"threshold": "nan"}]
)
def test_out_of_range_values_are_refused(bad):
    with pytest.raises(ParameterError):
        RuleParams.from_values(**bad)


@pytest.mark.parametrize("name", ["steps", "patience", "num_classes"])
def test_a_count_beyond_a_32_bit_integer_is_refused_by_name(name):
    with pytest.raises(ParameterError, match=f"{name} must be at most 2147483647, not 1e"):
        RuleParams.from_values(**{name: 1e300})
    assert getattr(RuleParams.from_values(**{name: 2**31 - 1}), name) == 2**31 - 1
