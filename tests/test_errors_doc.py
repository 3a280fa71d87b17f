"""docs/errors.md and docs/format.md cannot drift from the code.

* Every row of docs/errors.md is triggered by a test (here, or in
  tests/test_bad_input*.py through :func:`expect_error`), and the line the CLI
  prints must match the row's message, placeholders aside.
* Every place in the package that builds an error message must match a row:
  the literal parts of the message (an f-string's text between its fields)
  must all appear in one row's message.
* The plain-h5py example of docs/format.md is run and its trial analysed.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import poorinit
from poorinit import ParameterError, RuleParams, StepFileError, Trial, TrialWriter

ROOT = Path(__file__).resolve().parents[1]
ERRORS_DOC = ROOT / "docs" / "errors.md"
FORMAT_DOC = ROOT / "docs" / "format.md"
PACKAGE = Path(poorinit.__file__).resolve().parent
PREFIX = "poorinit: error: "
PLACEHOLDER = r"<[a-z][^<>]*>"

# Rows no test triggers, and why: each needs a bug, a signal, a missing
# package or a training script. The check against the code still applies.
NOT_TRIGGERED = {
    "internal-error": "needs a bug in poorinit",
    "out-of-memory": "needs memory to run out outside any file: tests/test_hostile_memory.py caps it where files "
    "are read",
    "tensor-out-of-memory": "where the cap bites varies: tests/test_hostile_memory.py accepts it or "
    "step-out-of-memory",
    "step-out-of-memory": "where the cap bites varies: tests/test_hostile_memory.py accepts it or "
    "tensor-out-of-memory",
    "tensor-chunk-budget": "needs 262,144 written chunks across tensors (minutes to build); tensor-expansion-budget "
    "triggers the same per-file accounting",
    "scan-out-of-memory": "a trial's reading names the file (tests/test_hostile_memory.py); this row is what "
    "remains: memory running out outside any file of the trial",
    "config-tomli": "needs Python 3.10 without tomli",
    "scan-no-dask": "needs an environment without Dask",
    "remote-backend": "needs fsspec without s3fs (both are in the 'test' extra)",
    "remote-permission": "needs a store that refuses the credentials (moto accepts any)",
    "scan-scheduler": "tests/test_dask.py",
    "follow-missing": "tests/test_follow.py (--follow waits on purpose)",
    "follow-not-directory": "tests/test_follow.py",
    "follow-unlistable": "tests/test_follow.py",
    "follow-finished-empty": "tests/test_follow.py",
    "follow-finished-early": "tests/test_follow.py",
    "follow-timeout-first": "tests/test_follow.py",
    "follow-timeout": "tests/test_follow.py",
    "recording-no-torch": "an ImportError in a training script: tests/test_torch_package.py",
    "recording-no-transformers": "an ImportError in a training script; transformers is in the test extra",
    "recording-no-lightning": "an ImportError in a training script; lightning is in the test extra",
    "recording-dtype": "raised in a training script: tests/test_torch_recorder.py",
    "recording-nested": "raised in a training script",
    "recording-repeated-step": "raised in a training script",
    "recording-loss-shape": "raised in a training script",
    "recording-close-inside": "raised in a training script",
    "recording-incomplete": "raised in a training script: tests/test_torch_recorder.py",
    "recording-outside-step": "raised in a training script",
    "recording-no-loss": "raised in a training script",
    "recording-no-gradient": "raised in a training script",
    "plot-no-matplotlib": "needs an environment without matplotlib: tests/test_plot.py hides it",
    "plot-format": "raised by the Python API: tests/test_plot.py",
}


# -- reading the doc ---------------------------------------------------------


def _cell_code(cell: str) -> str:
    cell = cell.strip()
    for fence in ("``", "`"):
        if cell.startswith(fence) and cell.endswith(fence) and len(cell) > 2 * len(fence):
            return cell[len(fence) : -len(fence)].strip()
    raise ValueError(f"not a code cell: {cell!r}")


@functools.cache
def documented() -> dict[str, str]:
    """id -> message template, from every table row of docs/errors.md whose first cell is an id."""
    rows: dict[str, str] = {}
    for line in ERRORS_DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 4 or not re.fullmatch(r"`[a-z0-9-]+`", cells[0]):
            continue
        error_id = cells[0].strip("`")
        assert error_id not in rows, f"{error_id} is documented twice"
        rows[error_id] = _cell_code(cells[1])
    return rows


def template_regex(template: str) -> re.Pattern[str]:
    """A message template as a regex: ``<...>`` placeholders match anything (or nothing)."""
    parts = re.split(PLACEHOLDER, template)
    return re.compile(".*?".join(re.escape(part) for part in parts), re.DOTALL)


def expect_error(result: subprocess.CompletedProcess[str], error_id: str, *culprits: object) -> str:
    """The CLI's contract for an input it cannot analyse; returns the message.

    Exit 2, nothing on stdout, one line on stderr without a traceback, the
    message of ``error_id`` in docs/errors.md, and every culprit (the file,
    the tensor) named.
    """
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), result.stderr
    message = lines[0][len(PREFIX) :]
    template = documented()[error_id]
    assert template_regex(template).fullmatch(message), f"{error_id}: {message!r} does not match {template!r}"
    for culprit in culprits:
        assert str(culprit) in message, (culprit, message)
    return message


def run(*args: object, cwd: object = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


# -- the doc against the tests -----------------------------------------------


def test_the_doc_has_rows_with_unique_ids():
    rows = documented()  # asserts uniqueness
    assert len(rows) > 60
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", error_id) for error_id in rows)


def test_every_row_is_triggered_by_a_test():
    """Each id appears as a string literal in a test that passes it to expect_error (or here)."""
    here = Path(__file__).parent
    tests = [*sorted(here.glob("test_bad_input*.py")), *sorted(here.glob("test_hostile*.py")), Path(__file__)]
    tests += [Path(__file__).parent / name for name in ("test_smdebug.py", "test_remote.py")]
    sources = "".join(path.read_text(encoding="utf-8") for path in tests if path.exists())
    untested = [i for i in documented() if i not in NOT_TRIGGERED and f'"{i}"' not in sources]
    assert not untested, f"rows no test triggers: {untested}"
    assert set(NOT_TRIGGERED) <= set(documented())


# -- the doc against the code ------------------------------------------------


def _error_classes() -> set[str]:
    """Names of PoorinitError and its subclasses defined anywhere in the package, and click's."""
    names = {"PoorinitError", "UsageError", "ClickException", "BadParameter"}
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in PACKAGE.rglob("*.py")}
    changed = True
    while changed:
        changed = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.ClassDef)
                    and node.name not in names
                    and any(isinstance(b, ast.Name) and b.id in names for b in node.bases)
                ):
                    names.add(node.name)
                    changed = True
    return names


# Where the message is among a constructor's arguments (default: the first).
MESSAGE_ARGUMENT = {"TrialError": 1, "StepFileError": 1, "TensorError": 2}


def _fragments(node: ast.AST, functions: dict[str, ast.FunctionDef]) -> list[list[str]] | None:
    """The literal parts of a message expression: one list per way it can be built; None if unknown."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [[node.value]]
    if isinstance(node, ast.JoinedStr):
        return [[v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _fragments(node.left, functions), _fragments(node.right, functions)
        if left is None or right is None:
            return left or right
        return [a + b for a in left for b in right]
    if isinstance(node, ast.IfExp):
        return (_fragments(node.body, functions) or []) + (_fragments(node.orelse, functions) or []) or None
    called = (
        node.func.id
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        else (node.func.attr if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None)
    )
    if called in functions:  # a helper (function or method of the module) that builds the message
        ways: list[list[str]] = []
        for inner in ast.walk(functions[called]):
            if isinstance(inner, ast.Return) and inner.value is not None:
                ways += _fragments(inner.value, functions) or []
        return ways or None
    return None


def message_sites() -> list[tuple[str, int, list[str]]]:
    """(file, line, literal parts) of every error message the package builds."""
    classes = _error_classes()
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in classes:
                index = MESSAGE_ARGUMENT.get(name, 0)
            elif name == "_error":  # DatasetTensor._error and the CLI's printer
                index = 0
            else:
                continue
            if len(node.args) <= index:
                continue
            for way in _fragments(node.args[index], functions) or []:
                parts = [p.strip() for p in way if len(p.strip()) >= 4]
                if parts:
                    sites.append((str(path.relative_to(PACKAGE.parent)), node.lineno, parts))
    return sites


def undocumented(templates: list[str]) -> list[str]:
    return [
        f"{file}:{line}: {parts}"
        for file, line, parts in message_sites()
        if not any(all(part in template for part in parts) for template in templates)
    ]


def test_every_message_in_the_code_is_documented():
    assert len(message_sites()) > 50
    missing = undocumented(list(documented().values()))
    assert not missing, "error messages not in docs/errors.md:\n" + "\n".join(missing)


def test_the_check_finds_a_message_missing_from_the_doc():
    rows = documented()
    without = [template for error_id, template in rows.items() if error_id != "step-truncated"]
    assert [site for site in undocumented(without) if "is truncated (" in site]


# -- rows triggered here: parameters, settings, the command line ---------------


@pytest.mark.parametrize(
    "error_id, args",
    [
        ("parameter-regex", ["--gradient-regex", "gradient/(unclosed"]),
        ("parameter-number", ["--threshold", "ten"]),
        ("parameter-nan", ["--distribution-range", "nan"]),
        ("parameter-whole", ["--patience", "0"]),
        ("parameter-too-large", ["--patience", "1e300"]),
        ("parameter-too-large", ["--num-classes", "1e300"]),
        ("parameter-threshold", ["--threshold", "0.5"]),
        ("parameter-range", ["--distribution-range", "-1"]),
        ("usage", ["--thresh", "3"]),
        ("usage-follow-only", ["--timeout", "3"]),
        ("usage-explain-follow", ["--explain", "--follow"]),
        ("select-unknown", ["--select", "gradient_sprad"]),
        ("select-nothing-left", ["--select", "saturation", "--ignore", "saturation"]),
        ("usage-output-count", ["--output", "a.json", "--output", "b.json"]),
        ("usage-stdout-twice", ["--format", "json", "--format", "junit"]),
        ("usage-same-output", ["--format", "json", "-o", "r", "--format", "junit", "-o", "r"]),
    ],
)
def test_parameter_and_usage_errors(healthy_trial, error_id, args):
    expect_error(run("analyze", healthy_trial, *args), error_id)


@pytest.mark.parametrize(
    "error_id, args",
    [
        ("plot-suffix", ["-o", "plot.jpg"]),
        ("plot-embed", ["-o", "plot.svg", "--embed"]),
        ("plot-unwritable", ["-o", "no/such/directory/plot.png"]),
    ],
)
def test_plot_errors(healthy_trial, tmp_path, error_id, args):
    expect_error(run("plot", healthy_trial, *args, cwd=tmp_path), error_id)


def test_parameter_mode_through_the_python_api():
    with pytest.raises(ParameterError) as raised:
        RuleParams.from_values(mode="test")
    assert template_regex(documented()["parameter-mode"]).fullmatch(str(raised.value))


def test_settings_from_the_environment_name_their_source(healthy_trial, tmp_path):
    env = {**os.environ, "POORINIT_THRESHOLD": "ten"}
    message = expect_error(run("analyze", healthy_trial, cwd=tmp_path, env=env), "setting-source")
    assert message.endswith("(from environment POORINIT_THRESHOLD)")


@pytest.mark.parametrize(
    "error_id, text",
    [
        ("config-not-toml", "threshold = \n"),
        ("config-no-table", "[project]\nname = 'x'\n"),
        ("config-not-table", "[tool]\npoorinit = 3\n"),
        ("config-unknown-setting", "[tool.poorinit]\nthreshhold = 3\n"),
    ],
)
def test_config_file_errors(healthy_trial, tmp_path, error_id, text):
    config = tmp_path / "pyproject.toml"
    config.write_text(text)
    expect_error(run("analyze", healthy_trial, "--config", config, cwd=tmp_path), error_id, config)


def test_criterion_names_in_a_config_file_must_be_names(healthy_trial, tmp_path):
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.poorinit]\nselect = 3\n")
    expect_error(run("analyze", healthy_trial, cwd=tmp_path), "setting-names", config)


def test_checks_with_an_unknown_name():
    expect_error(run("checks", "saturaton"), "checks-unknown", "saturaton", "did you mean 'saturation'?")


def test_config_file_missing_and_unreadable(healthy_trial, tmp_path):
    expect_error(run("analyze", healthy_trial, "--config", tmp_path / "nope.toml"), "config-missing")
    directory_config = tmp_path / "dir.toml"
    directory_config.mkdir()
    expect_error(run("analyze", healthy_trial, "--config", directory_config), "config-missing")


@pytest.mark.parametrize(
    "error_id, command, variable, value",
    [
        ("setting-choice", "analyze", "POORINIT_FORMAT", "xml"),
        ("setting-positive", "scan", "POORINIT_JOBS", "0"),
        ("setting-text", "scan", "POORINIT_SCHEDULER", " "),
        ("setting-boolean", "analyze", "POORINIT_STRICT", "maybe"),
    ],
)
def test_setting_errors(healthy_trial, tmp_path, error_id, command, variable, value):
    """The options are typed by click; a setting's own checks meet values from the environment or a file."""
    env = {**os.environ, variable: value}
    expect_error(run(command, healthy_trial, cwd=tmp_path, env=env), error_id, f"(from environment {variable})")


def test_an_unwritable_report(healthy_trial, tmp_path):
    expect_error(
        run("analyze", healthy_trial, "--output", tmp_path / "no" / "such" / "report.txt"), "report-unwritable"
    )


def test_scan_errors(tmp_path):
    expect_error(run("scan", tmp_path / "nope"), "scan-root", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    expect_error(run("scan", tmp_path / "empty"), "scan-no-trials")


def test_an_unreadable_config_file(healthy_trial, tmp_path):
    from .test_bad_input import run_unprivileged

    config = tmp_path / "poorinit.toml"
    config.write_text("[tool.poorinit]\nthreshold = 10\n")
    config.chmod(0)
    expect_error(run_unprivileged("analyze", healthy_trial, "--config", config), "config-unreadable", config)


def test_a_step_file_that_vanishes_after_listing(tmp_path):
    """A race: only the Python API can place the deletion between listing and reading."""
    TrialWriter(tmp_path).write_step(0, losses={"loss": 1.0})
    trial = Trial(tmp_path)
    trial.files[0].path.unlink()
    with pytest.raises(StepFileError) as raised:
        trial.open(trial.files[0])
    assert template_regex(documented()["step-vanished"]).fullmatch(str(raised.value))


# -- docs/format.md ------------------------------------------------------------


def format_example() -> str:
    """The code block of docs/format.md marked as the complete example."""
    text = FORMAT_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(# write_trial\.py.*?)```", text, re.DOTALL)
    assert len(blocks) == 1, "docs/format.md must hold one ```python block starting '# write_trial.py'"
    return blocks[0]


def test_the_plain_h5py_example_of_the_format_spec_writes_a_trial(tmp_path):
    script = tmp_path / "write_trial.py"
    script.write_text(format_example())
    written = subprocess.run([sys.executable, script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert written.returncode == 0, written.stderr
    assert "poorinit" not in format_example().replace("poorinit_format", "")  # plain h5py, no import
    trial = tmp_path / "runs" / "plain-h5py"
    result = run("analyze", trial, "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    statuses = {c["check"]: c["status"] for c in document["criteria"]}
    assert all(statuses[check] == "passed" for check in ("activation_variance", "gradient_spread", "loss_decrease"))
    assert Trial(trial).finished
    inspected = json.loads(run("inspect", trial, "--format", "json").stdout)
    tensors = {t["name"]: t["collections"] for t in inspected["modes"][0]["tensors"]}
    assert tensors["block1/fc.relu_input"] == ["activation_inputs"]
    assert tensors["loss"] == ["losses"]


def test_a_step_file_the_caller_holds_open_is_named_as_such_not_as_damage(tmp_path):
    """Python API: an h5py.File left open by the caller makes HDF5 refuse poorinit's open; the file is fine."""
    import h5py
    import numpy as np

    import poorinit

    with poorinit.TrialWriter(tmp_path / "t") as writer:
        for step in range(6):
            writer.write_step(step, activation_inputs={"a.relu_input": np.arange(-8.0, 8.0)},
                              gradients={"gradient/w": np.arange(32.0)}, losses={"loss": 2.0 - 0.1 * step})
    held = h5py.File(sorted((tmp_path / "t").glob("*.h5"))[0], "a")
    try:
        with pytest.raises(poorinit.PoorinitError) as raised:
            poorinit.analyze(tmp_path / "t")
    finally:
        held.close()
    assert template_regex(documented()["step-open-in-process"]).fullmatch(str(raised.value)), str(raised.value)
    poorinit.analyze(tmp_path / "t")  # closed: read as any other trial
