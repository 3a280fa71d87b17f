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
