"""A small analysis pays for numpy, not for what it does not use.

h5py is imported only for a step file poorinit does not read itself (or to find
HDF5's lookup3 where h5py's wheel does not ship libhdf5 beside it), rich only to
draw a table, importlib.metadata only when some installed distribution
declares a check plugin besides the built-ins."""

import subprocess
import sys

from poorinit.checks import registry
from poorinit.checksum import _shipped_libhdf5

from .conftest import write_synthetic_trial


def imported_modules(*args):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "poorinit", *map(str, args)],
                            capture_output=True, text=True, timeout=120)
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


def test_a_json_report_imports_neither_h5py_nor_rich_nor_importlib_metadata(tmp_path):
    trial = write_synthetic_trial(tmp_path / "t", steps=3)
    modules = imported_modules("analyze", trial, "--format", "json")
    assert "numpy" in modules
    assert ("h5py" in modules) == (not _shipped_libhdf5())
    assert not {"rich", "rich.console", "importlib.metadata"} & modules


def test_only_builtins_declared_means_no_metadata_scan():
    # poorinit's own dist-info declares the four built-ins; nothing else here does.
    assert registry._plugin_entry_points() == ()


def test_a_plugin_on_the_path_is_sniffed_and_loaded_the_standard_way(tmp_path, monkeypatch):
    dist = tmp_path / "someplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: someplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[console_scripts]\nx = y:z\n\n[poorinit.checks]\nmine = someplugin:Mine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # The full lookup then lists every declared check, the built-ins included.
    assert "mine" in [entry.name for entry in registry._plugin_entry_points()]


def test_entry_point_sections_are_read_exactly():
    text = "[poorinit.checks]\na = m.x:A\nb = m.y:B [extra]\n# c = no:C\n[other]\nd = m.z:D\n"
    assert registry._section_values(text, "[poorinit.checks]") == {"m.x:A", "m.y:B"}
