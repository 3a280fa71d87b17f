"""A regex that backtracks for ever against a name from the file: refused, naming both.

Tensor names come from the file; a user's regex with nested alternatives
(``(a|aa)+$``) matched against a long name of ``a`` would backtrack for
longer than the universe lasts. Matching has a time limit
(``poorinit.checks.base.REGEX_SECONDS``), and the error says which regex and
which tensor.
"""

from __future__ import annotations

import numpy as np
import pytest

from poorinit import TrialWriter

from .test_errors_doc import expect_error, run

LONG_NAME = "a" * 5000 + "!"


def test_a_catastrophic_regex_is_stopped_and_named(tmp_path):
    # A dependency of poorinit; only an environment installed before it was added lacks it (pip install -e .).
    pytest.importorskip("regex", reason="the regex package (a dependency) is not installed: pip install -e .")
    rng = np.random.default_rng(0)
    with TrialWriter(tmp_path / "t") as writer:
        for step in range(3):
            writer.write_step(
                step,
                activation_inputs={LONG_NAME: rng.normal(0, 1, (8, 8)), "net.0.relu_input": rng.normal(0, 1, (8, 8))},
                gradients={"gradient/w": rng.normal(0, 0.05, (8, 8))},
                losses={"loss": 2.0 - 0.1 * step},
            )
    result = run("analyze", tmp_path / "t", "--activation-inputs-regex", "(a|aa)+$")
    message = expect_error(result, "regex-timeout", "'(a|aa)+$'", "a" * 80 + "... (5001 characters)")
    assert len(message) < 400


def test_ordinary_regexes_still_match_as_re_does(tmp_path):
    from poorinit.checks.base import Selector

    selector = Selector("activation_inputs", (r".*relu_input", r"layer\d+/(?:pre|post)$"))
    assert selector.matches("net.0.relu_input", ())
    assert selector.matches("layer12/pre", ())
    assert not selector.matches("net.0.weight", ())


def test_a_line_break_in_a_name_does_not_hide_its_layer(tmp_path):
    """`.` matches a line break too: an exploding layer named ``net.9\\n.relu_input`` is judged, and fires."""
    rng = np.random.default_rng(0)
    with TrialWriter(tmp_path / "t", fsync=False) as writer:
        for step in range(10):
            activations = {f"net.{i}.relu_input": rng.normal(0, 1, (16, 16)) for i in range(3)}
            activations["net.9\n.relu_input"] = rng.normal(0, 1e4, (16, 16))
            writer.write_step(step, activation_inputs=activations,
                              gradients={"gradient/w": rng.normal(0, 0.05, (16, 16))},
                              losses={"loss": 2.0 - 0.1 * step})
    result = run("analyze", tmp_path / "t", "--quiet")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "activation variance" in result.stdout


LINEAR = [
    r".*(relu|relu6|gelu|silu|elu|selu|celu|softplus|mish|hardswish)_input",  # the defaults
    r".*(?:hardtanh|hardsigmoid|tanh|sigmoid|softsign|softmax)_input$",
    r"net\.[0-9]+\.relu_input", r"[^/]*/weight$", r"loss", r".*?x", r"a{0,10}b",
]
BACKTRACKING = [
    r"(a|aa)+$", r"(a+)+$", r".*a.*b", r"(ab)*c", r"a{0,1000}b", r"(?!g).*w",
    # where re and regex differ on some Unicode characters: left to regex
    r"\w+_input", r".*\bx", r"(?i).*relu",
]


@pytest.mark.parametrize("pattern", LINEAR)
def test_patterns_linear_in_the_name_are_matched_by_re(pattern):
    """No import of the regex package for them (it costs more than judging a small step file)."""
    import re

    from poorinit.checks.base import _bounded, _linear

    assert _linear(pattern)
    assert isinstance(_bounded(pattern)._compiled, re.Pattern)  # type: ignore[attr-defined]


@pytest.mark.parametrize("pattern", BACKTRACKING)
def test_patterns_that_may_backtrack_keep_their_time_limit(pattern):
    from poorinit.checks.base import _linear

    assert not _linear(pattern)


def test_linear_patterns_match_as_regex_does():
    regex = pytest.importorskip("regex")
    import re

    names = ["net.0.relu_input", "net.0.relu6_input", "x.tanh_input", "a.softmax_input\n", "net.12.relu_input",
             "gradient/net.0.weight", "layer/weight", "loss", "lossy", "\u00e9.relu_input", "net.9\n.relu_input",
             "aaaaab", "b", "relu_inpu", ""]
    for pattern in LINEAR:
        ours, theirs = re.compile(pattern, re.DOTALL), regex.compile(pattern, flags=regex.VERSION0 | regex.DOTALL)
        for name in names:
            assert bool(ours.match(name)) == bool(theirs.match(name)), (pattern, name)


def test_a_huge_name_against_the_default_pattern_takes_linear_time():
    """A million-character name from a hostile file: one pass, not a timeout (and not for ever)."""
    import time

    from poorinit.checks.base import Selector
    from poorinit.params import DEFAULT_ACTIVATION_INPUTS_REGEX

    selector = Selector("activation_inputs", (DEFAULT_ACTIVATION_INPUTS_REGEX,))
    started = time.process_time()
    assert not selector.matches("relu" * 250_000 + "!", ())
    assert selector.matches("x" * 1_000_000 + ".relu_input", ())
    assert time.process_time() - started < 5  # about 0.1 s; a quadratic match would take hours
