"""JUnit XML, for CI systems that show test reports (GitLab, Jenkins, GitHub actions).

One ``<testsuite>`` per trial and one ``<testcase>`` per criterion: a fired
criterion is a ``<failure>`` whose message carries the figure and the limit,
a criterion that is not applicable is ``<skipped>``, and a trial that could
not be analysed is one test case with an ``<error>``. The exact figures are
also ``<property>`` elements of the test case. Every text and attribute
goes through :func:`poorinit.escape.xml`, so no name can make the document
invalid.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import escape
from ..checks.base import CriterionResult, Status
from .table import figure, limit

if TYPE_CHECKING:
    from ..rule import Verdict
    from ..scan import TrialResult


def failure_message(c: CriterionResult) -> str:
    where = []
    if c.step is not None:
        where.append(f"step {c.step}")
    if c.tensor:
        where.append(c.tensor)
    at = f" at {', '.join(where)}" if where else ""
    return f"{c.title} fired: figure {figure(c.figure)}, fires when {limit(c)}{at}"


def _counts(suite: ET.Element, tests: int, failures: int, errors: int, skipped: int) -> None:
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))


def _verdict_suite(parent: ET.Element, verdict: Verdict) -> tuple[int, int, int, int]:
    trial = escape.xml(verdict.trial)
    suite = ET.SubElement(parent, "testsuite", name=trial)
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="mode", value=verdict.params.mode)
    ET.SubElement(properties, "property", name="steps", value=",".join(map(str, verdict.steps)))
    failures = skipped = 0
    for c in verdict.criteria:
        case = ET.SubElement(suite, "testcase", classname=trial, name=escape.xml(c.title))
        case_properties = ET.SubElement(case, "properties")
        for key, value in (("figure", c.figure), ("limit", c.limit), ("relation", c.relation), ("step", c.step),
                           ("tensor", c.tensor)):
            if value is not None and value != "":
                ET.SubElement(case_properties, "property", name=key, value=escape.xml(value))
        if c.status is Status.FIRED:
            failures += 1
            ET.SubElement(case, "failure", message=escape.xml(failure_message(c)), type="fired").text = escape.xml(
                c.reason
            )
        elif c.status is Status.NOT_APPLICABLE:
            skipped += 1
            ET.SubElement(case, "skipped", message=escape.xml(c.reason))
    if verdict.warnings:
        ET.SubElement(suite, "system-out").text = "\n".join(f"warning: {escape.xml(w)}" for w in verdict.warnings)
    totals = (len(verdict.criteria), failures, 0, skipped)
    _counts(suite, *totals)
    return totals


def _error_suite(parent: ET.Element, trial: str, error: str) -> tuple[int, int, int, int]:
    trial, error = escape.xml(trial), escape.xml(error)
    suite = ET.SubElement(parent, "testsuite", name=trial)
    case = ET.SubElement(suite, "testcase", classname=trial, name="analysis")
    ET.SubElement(case, "error", message=error, type="not analysed").text = error
    _counts(suite, 1, 0, 1, 0)
    return (1, 0, 1, 0)


def _document(results: Sequence[TrialResult]) -> str:
    root = ET.Element("testsuites", name="poorinit")
    totals = [0, 0, 0, 0]
    for r in results:
        if r.verdict is not None:
            counted = _verdict_suite(root, r.verdict)
        else:
            counted = _error_suite(root, r.trial, r.error or "")
        totals = [a + b for a, b in zip(totals, counted, strict=True)]
    _counts(root, *totals)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render(verdict: Verdict) -> str:
    from ..scan import TrialResult

    return _document([TrialResult(verdict.trial, verdict=verdict)])


def render_scan(results: Sequence[TrialResult]) -> str:
    return _document(results)
