"""Settings: command line > environment > config file > built-in default, each with its source."""

import json
import os
import subprocess

import pytest

from poorinit.config import BUILT_IN, COMMAND_LINE, ConfigError, resolve
from poorinit.errors import ParameterError
from poorinit.params import DEFAULT_ACTIVATION_INPUTS_REGEX

from .conftest import write_synthetic_trial


def run(*args, cwd, env=None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("POORINIT_")}
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**environment, **(env or {})}, timeout=120)


def pyproject(directory, table):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n[tool.poorinit]\n{table}\n")
    return directory / "pyproject.toml"


def test_defaults_when_nothing_is_set(tmp_path):
    settings = resolve({}, environ={}, cwd=tmp_path)
    assert settings["threshold"].value == 10.0 and settings["threshold"].source == BUILT_IN
    assert settings["activation_inputs_regex"].value == [DEFAULT_ACTIVATION_INPUTS_REGEX]
    assert settings.config_file is None


def test_precedence_command_line_environment_file_default(tmp_path):
    pyproject(tmp_path, "threshold = 3\npatience = 2\nsteps = 7")
    environ = {"POORINIT_THRESHOLD": "4", "POORINIT_PATIENCE": "3"}
    settings = resolve({"threshold": "5", "patience": None}, environ=environ, cwd=tmp_path)
    assert (settings["threshold"].value, settings["threshold"].source) == (5.0, COMMAND_LINE)
    assert (settings["patience"].value, settings["patience"].source) == (3, "environment POORINIT_PATIENCE")
    assert settings["steps"].value == 7 and settings["steps"].source.endswith("pyproject.toml [tool.poorinit]")
    assert settings["distribution_range"].source == BUILT_IN


def test_the_nearest_pyproject_is_found_from_a_subdirectory(tmp_path):
    pyproject(tmp_path, "threshold = 30")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert resolve({}, environ={}, cwd=nested)["threshold"].value == 30.0
    pyproject(tmp_path / "a", "threshold = 40")
    assert resolve({}, environ={}, cwd=nested)["threshold"].value == 40.0


def test_config_file_option_reads_a_plain_table_or_a_pyproject(tmp_path):
    pyproject(tmp_path, "threshold = 30")
    plain = tmp_path / "gate.toml"
    plain.write_text('threshold = 50\nactivation-inputs-regex = [".*relu_input", "a,b"]\nformat = "junit"\n')
    settings = resolve({}, config_file=plain, environ={}, cwd=tmp_path)
    assert settings["threshold"].value == 50.0 and settings["threshold"].source == str(plain)
    assert settings["activation_inputs_regex"].value == [".*relu_input", "a,b"]  # a list keeps its commas
    assert settings["format"].value == "junit"
    other = pyproject(tmp_path / "other", "threshold = 60")
    assert resolve({}, config_file=other, environ={}, cwd=tmp_path)["threshold"].value == 60.0


@pytest.mark.parametrize(
    "content, message",
    [
        ("[tool.poorinit]\ntreshold = 3\n", "unknown setting 'treshold'"),
        ("[tool.poorinit\n", "is not valid TOML"),
        ("[tool.poorinit]\nsteps = 0\n", "steps must be a whole number >= 1, not 0 (from "),
        ("[tool.poorinit]\nformat = 'yaml'\n", "format must be one of"),
    ],
)
def test_a_bad_config_file_names_itself(tmp_path, content, message):
    (tmp_path / "pyproject.toml").write_text(content)
    with pytest.raises((ConfigError, ParameterError)) as raised:
        resolve({}, environ={}, cwd=tmp_path)
    assert message in str(raised.value)
    assert "pyproject.toml" in str(raised.value)


def test_a_bad_environment_value_names_the_variable(tmp_path):
    expected = r"threshold must be a number, not 'ten' \(from environment POORINIT_THRESHOLD\)"
    with pytest.raises(ParameterError, match=expected):
        resolve({}, environ={"POORINIT_THRESHOLD": "ten"}, cwd=tmp_path)
    with pytest.raises(ParameterError, match="jobs must be a whole number"):
        resolve({}, environ={"POORINIT_JOBS": "0"}, cwd=tmp_path)


def test_a_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        resolve({}, config_file=tmp_path / "missing.toml", environ={})


def test_poorinit_config_prints_every_setting_and_its_source(tmp_path):
    pyproject(tmp_path, "threshold = 3\nsteps = 8")
    result = run("config", "--json", "--patience", "2", cwd=tmp_path, env={"POORINIT_STEPS": "9"})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    settings = document["settings"]
    assert document["config_file"] == str(tmp_path / "pyproject.toml")
    assert settings["patience"] == {"value": 2, "source": "command line"}
    assert settings["steps"] == {"value": 9, "source": "environment POORINIT_STEPS"}
    assert settings["threshold"] == {"value": 3.0, "source": f"{tmp_path / 'pyproject.toml'} [tool.poorinit]"}
    assert settings["mode"] == {"value": "train", "source": "built-in default"}


def test_poorinit_config_prints_a_table_that_is_valid_toml(tmp_path):
    tomllib = pytest.importorskip("tomllib")
    result = run("config", "--threshold", "4", cwd=tmp_path)
    table = tomllib.loads(result.stdout)["tool"]["poorinit"]
    assert table["threshold"] == 4.0 and table["steps"] == 10
    assert table["activation_inputs_regex"] == [DEFAULT_ACTIVATION_INPUTS_REGEX]


def test_the_precedence_decides_the_verdict(tmp_path):
    write_synthetic_trial(tmp_path / "trial", layers=3, steps=6)
    pyproject(tmp_path, "threshold = 1")  # every ratio exceeds 1: fires
    assert run("analyze", "trial", cwd=tmp_path).returncode == 1
    assert run("analyze", "trial", cwd=tmp_path, env={"POORINIT_THRESHOLD": "10"}).returncode == 0
    assert run("analyze", "trial", "--threshold", "1", cwd=tmp_path, env={"POORINIT_THRESHOLD": "10"}).returncode == 1
    fmt = run("analyze", "trial", cwd=tmp_path, env={"POORINIT_THRESHOLD": "10", "POORINIT_FORMAT": "json"})
    assert json.loads(fmt.stdout)["parameters"]["threshold"] == 10.0


def test_bad_settings_exit_2_with_one_line_naming_the_source(tmp_path):
    write_synthetic_trial(tmp_path / "trial", layers=3, steps=6)
    result = run("analyze", "trial", cwd=tmp_path, env={"POORINIT_STEPS": "many"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "(from environment POORINIT_STEPS)" in result.stderr
