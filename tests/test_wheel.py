"""The wheel a user installs: built, installed in a new venv, run as a stranger runs it.

One test, about 30-60 s: `pip wheel . --no-deps` from a copy of the sources
(the build writes build/ and *.egg-info beside them; the checkout must stay
clean), a new venv with the wheel and its dependencies from the package index
pip is configured with, then the installed console script: `--version`, and an
analysis of a shipped sample trial, which must fire (exit 1). What the editable
install of the test environment hides (a module left out of the wheel, a
missing py.typed or LICENSE, an entry point that names a moved class) fails
here.
"""

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import poorinit

ROOT = Path(__file__).resolve().parent.parent


def check(command, **kwargs):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **kwargs)
    tail = f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{tail}"
    return result


def test_the_wheel_installs_in_a_new_venv_and_analyses_a_sample_trial(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "poorinit", source / "poorinit", ignore=shutil.ignore_patterns("__pycache__"))

    check([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", tmp_path / "dist"], cwd=source)
    (wheel,) = (tmp_path / "dist").glob("poorinit-*.whl")
    assert wheel.name == f"poorinit-{poorinit.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"poorinit-{poorinit.__version__}.dist-info/METADATA").decode()
    assert {"poorinit/py.typed", "poorinit/cli.py", "poorinit/report/junit.py"} <= names
    assert f"poorinit-{poorinit.__version__}.dist-info/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in metadata

    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    bin_dir = environment / ("Scripts" if sys.platform == "win32" else "bin")
    check([bin_dir / "python", "-m", "pip", "install", "-q", wheel])

    version = check([bin_dir / "poorinit", "--version"], cwd=tmp_path)
    assert version.stdout.strip() == f"poorinit {poorinit.__version__}"
    analysed = subprocess.run([str(bin_dir / "poorinit"), "analyze", str(ROOT / "sample_trials" / "moon-zeros"),
                               "--format", "json"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert analysed.returncode == 1, analysed.stderr  # all-zero weights: the rule fires
    assert '"status": "fired"' in analysed.stdout
    # The installed package is the wheel's, not this checkout's.
    where = check([bin_dir / "python", "-c", "import poorinit; print(poorinit.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(environment)
