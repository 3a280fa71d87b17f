"""The examples of issue 9's "Messages" that earlier rounds did not cover: each is one typed line, exit 2.

The rest of that list (non-string regexes, a 400-digit integer, ``steps =
true``, ``threshold = inf``, a misspelt POORINIT_ variable, ParameterError
from the Python API, a missing filter named) is in tests/test_bad_input_values.py,
tests/test_config.py and tests/test_bad_input_budgets.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poorinit import TrialWriter

from .test_errors_doc import expect_error, run


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, "{a=" * 3000 + "1" + "}" * 3000])
def test_deeply_nested_toml_is_not_valid_toml(healthy_trial: Path, tmp_path: Path, nested: str) -> None:
    """The TOML parser recurses once per level: thousands of levels are refused, not an internal error."""
    config = tmp_path / "pyproject.toml"
    config.write_text(f"[tool.poorinit]\nthreshold = {nested}\n")
    message = expect_error(run("analyze", healthy_trial, "--config", config), "config-not-toml", config)
    assert "nested too deeply" in message


@pytest.fixture
def unfinished_trial(tmp_path: Path) -> Path:
    """One step of ten, no FINISHED marker: --follow would sleep between looks."""
    writer = TrialWriter(tmp_path / "live", fsync=False)
    writer.write_step(0, activation_inputs={"net.0.relu_input": np.ones((4, 4))}, losses={"loss": 1.0})
    return tmp_path / "live"


@pytest.mark.parametrize("option, value", [("--poll-interval", "1e300"), ("--timeout", "inf"),
                                           ("--timeout", "1e300")])
def test_a_wait_too_long_for_any_timer_is_refused_before_following(unfinished_trial: Path, option: str,
                                                                   value: str) -> None:
    args = ["analyze", unfinished_trial, "--follow", option, value]
    if option != "--timeout":
        args += ["--timeout", "30"]
    expect_error(run(*args), "setting-seconds", option.lstrip("-").replace("-", "_"))


def test_a_400_digit_integer_on_the_command_line_is_shown_as_typed(healthy_trial: Path) -> None:
    """Not as the float it overflows to ('not inf' would puzzle whoever typed digits)."""
    message = expect_error(run("analyze", healthy_trial, "--steps", "9" * 400), "parameter-finite", "steps")
    assert "'9999" in message and "(402 characters)" in message and "not inf" not in message
