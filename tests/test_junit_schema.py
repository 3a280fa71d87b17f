"""JUnit XML valid against Jenkins xUnit's junit-10.xsd, with a real validator.

The schema is vendored in tests/schemas/junit-10.xsd (its source and commit
are named in the file). GitLab reads the same elements, so one valid document
serves Jenkins, GitLab and GitHub test-report actions.
"""

import datetime
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from .conftest import write_synthetic_trial

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).parent / "schemas" / "junit-10.xsd"))


def run(*args):
    return subprocess.run(["poorinit", *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("junit") / "runs"
    write_synthetic_trial(root / "healthy", layers=3, steps=6)  # 6 of 10 steps: a warning in system-out
    write_synthetic_trial(root / "vanishing", layers=3, steps=6, layer_scale=lambda i: 0.1**i,
                          gradient_scale=1e-5, loss=lambda s: 0.693 + 0.01 * s)
    (root / "broken").mkdir()
    (root / "broken" / "000000000000_train_0.h5").write_text("not HDF5")
    return root


def test_scan_report_is_valid_and_carries_time_and_timestamp(runs):
    result = run("scan", runs, "--format", "junit")
    assert result.returncode == 1, result.stderr
    SCHEMA.validate(result.stdout)
    root = ET.fromstring(result.stdout)
    assert root.get("skipped") is None  # not in the schema on <testsuites>
    for suite in root.findall("testsuite"):
        assert float(suite.get("time")) >= 0
        datetime.datetime.fromisoformat(suite.get("timestamp"))
        for case in suite.findall("testcase"):
            assert case.find("properties") is None and case.get("time") is not None
    healthy = next(s for s in root.findall("testsuite") if s.get("name") == str(runs / "healthy"))
    assert "analysed 6 of steps=10 steps" in healthy.find("system-out").text


def test_analyze_report_is_valid(runs):
    result = run("analyze", runs / "vanishing", "--format", "junit")
    assert result.returncode == 1
    SCHEMA.validate(result.stdout)


def test_a_control_character_in_a_name_cannot_break_the_document(tmp_path):
    """XML 1.0 cannot carry most control characters even escaped: they are written as \\xNN."""
    write_synthetic_trial(tmp_path / "odd\x1bname", layers=3, steps=6)
    result = run("analyze", tmp_path / "odd\x1bname", "--format", "junit")
    assert result.returncode == 0, result.stderr
    SCHEMA.validate(result.stdout)
    assert ET.fromstring(result.stdout).find("testsuite").get("name").endswith("odd\\x1bname")


def test_the_schema_rejects_what_the_old_report_wrote():
    """The validator is real: properties inside a test case (poorinit 0.1.0's layout) fail."""
    old = ('<testsuites name="poorinit"><testsuite name="t" tests="1" failures="0" errors="0">'
           '<testcase name="c"><properties><property name="figure" value="1"/></properties></testcase>'
           "</testsuite></testsuites>")
    assert not SCHEMA.is_valid(old)
