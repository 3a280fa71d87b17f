"""poorinit.torch is an optional extra: without torch, one clear ImportError; the rest of poorinit works.

The child processes block torch with ``sys.modules["torch"] = None``, which
makes every ``import torch`` fail exactly as on a machine without it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK_TORCH = 'import sys; sys.modules["torch"] = None\n'


ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *, without_torch: bool = False) -> subprocess.CompletedProcess[str]:
    program = (BLOCK_TORCH if without_torch else "") + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_without_torch_the_import_error_names_the_extra():
    result = run_python("import poorinit.torch\n", without_torch=True)
    assert result.returncode == 1
    # One exception, not a chain: the user sees the fix, not a traceback through our modules.
    raised = [line for line in result.stderr.splitlines() if line.startswith(("ImportError", "ModuleNotFoundError"))]
    assert len(raised) == 1 and "During handling" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: poorinit.torch needs PyTorch"), last
    assert "pip install 'poorinit[torch]'" in last


def test_without_torch_the_error_can_be_caught_as_an_import_error():
    result = run_python(
        """
        try:
            from poorinit.torch import Recorder
        except ImportError as error:
            print(error.name)
        """,
        without_torch=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "torch"


def test_without_torch_the_rest_of_poorinit_imports_and_runs():
    result = run_python(
        """
        import pathlib, tempfile
        import poorinit, poorinit.cli
        from tests.conftest import write_synthetic_trial
        with tempfile.TemporaryDirectory() as path:
            trial = write_synthetic_trial(pathlib.Path(path) / "t")
            print(type(poorinit.analyze(trial)).__name__)
        """,
        without_torch=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Verdict"


def test_with_torch_the_package_exports_the_recorder():
    result = run_python(
        """
        import poorinit.torch as pt
        print(sorted(pt.__all__))
        print(pt.Recorder.__module__, pt.RecordingError.__mro__[1].__name__)
        """
    )
    if "No module named 'torch'" in result.stderr or "needs PyTorch" in result.stderr:
        import pytest

        pytest.skip("torch is not installed (extra 'torch')")
    assert result.returncode == 0, result.stderr
    names, where = result.stdout.strip().splitlines()
    assert names == (
        "['ACTIVATION_KINDS', 'Hook', 'Recorder', 'RecordingError', 'RecordingWarning', 'activation_kind', 'hook', "
        "'preflight']"
    )
    assert where == "poorinit.torch.recorder PoorinitError"
