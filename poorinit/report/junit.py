"""JUnit XML, for CI systems that show test reports (Jenkins, GitLab, GitHub actions).

Valid against Jenkins xUnit's junit-10.xsd (tests/schemas/junit-10.xsd, checked
by a real validator in tests/test_junit_schema.py), which is also what GitLab
reads. One ``<testsuite>`` per trial and one ``<testcase>`` per criterion: a
fired criterion is a ``<failure>`` whose message carries the figure and the
limit, a criterion that is not applicable is ``<skipped>`` with its reason, and
a trial that could not be analysed is one test case with an ``<error>``.

The schema allows ``<properties>`` only on a suite, so the exact figures of
each criterion are suite properties named ``<criterion>.figure``,
``<criterion>.limit``, ... A suite's ``time`` is how long the trial's analysis
took and its ``timestamp`` when it started (UTC); a case's ``time`` is 0,
because the criteria are measured together in one pass over the step files
and have no duration of their own. ``<testsuites>`` carries no ``skipped``
count: the schema has none there.
"""

from __future__ import annotations

import datetime
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import escape
from ..checks.base import CriterionResult, Status
from .table import figure, limit

if TYPE_CHECKING:
    from ..rule import Verdict
    from ..scan import TrialResult

# Characters XML 1.0 cannot carry at all, escaped or not: a tensor name with a
# control character must not make the whole report unparsable. poorinit/escape.py
# makes them (and every other hidden character) visible, e.g. \x1b.
text = escape.xml


def failure_message(c: CriterionResult) -> str:
    where = []
    if c.step is not None:
        where.append(f"step {c.step}")
    if c.tensor:
        where.append(c.tensor)
    at = f" at {', '.join(where)}" if where else ""
    return f"{c.title} fired: figure {figure(c.figure)}, fires when {limit(c)}{at}"


def _seconds(value: float | None) -> str:
    return f"{value or 0.0:.3f}"


def _timestamp(started: float | None) -> str:
    when = time.time() if started is None else started
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat(timespec="seconds")


def _suite(parent: ET.Element, result: TrialResult) -> ET.Element:
    return ET.SubElement(parent, "testsuite", name=text(result.trial), time=_seconds(result.seconds),
                         timestamp=_timestamp(result.started))


def _counts(suite: ET.Element, tests: int, failures: int, errors: int, skipped: int | None = None) -> None:
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    if skipped is not None:
        suite.set("skipped", str(skipped))


def _verdict_suite(parent: ET.Element, result: TrialResult, verdict: Verdict) -> tuple[int, int, int]:
    suite = _suite(parent, result)
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="mode", value=text(verdict.params.mode))
    ET.SubElement(properties, "property", name="steps", value=",".join(map(str, verdict.steps)))
    for c in verdict.criteria:
        for key, value in (("status", c.status.value), ("figure", c.figure), ("limit", c.limit),
                           ("relation", c.relation), ("step", c.step), ("tensor", c.tensor)):
            if value is not None and value != "":
                ET.SubElement(properties, "property", name=f"{c.check}.{key}", value=text(value))
    failures = skipped = 0
    for c in verdict.criteria:
        case = ET.SubElement(suite, "testcase", name=text(c.title), classname=text(verdict.trial), time="0")
        if c.status is Status.FIRED:
            failures += 1
            detail = f"{c.reason} Remedy: {c.remedy}" if c.remedy else c.reason
            ET.SubElement(case, "failure", message=text(failure_message(c)), type="fired").text = text(detail)
        elif c.status is Status.NOT_APPLICABLE:
            skipped += 1
            ET.SubElement(case, "skipped", message=text(c.reason))
    if verdict.warnings:
        ET.SubElement(suite, "system-out").text = "\n".join(f"warning: {text(w)}" for w in verdict.warnings)
    _counts(suite, len(verdict.criteria), failures, 0, skipped)
    return len(verdict.criteria), failures, 0


def _error_suite(parent: ET.Element, result: TrialResult) -> tuple[int, int, int]:
    suite = _suite(parent, result)
    error = result.error or ""
    case = ET.SubElement(suite, "testcase", name="analysis", classname=text(result.trial),
                         time=_seconds(result.seconds))
    ET.SubElement(case, "error", message=text(error), type="not analysed").text = text(error)
    _counts(suite, 1, 0, 1, 0)
    return 1, 0, 1


def _document(results: Sequence[TrialResult]) -> str:
    root = ET.Element("testsuites", name="poorinit")
    totals = [0, 0, 0]
    for r in results:
        counted = _verdict_suite(root, r, r.verdict) if r.verdict is not None else _error_suite(root, r)
        totals = [a + b for a, b in zip(totals, counted, strict=True)]
    _counts(root, *totals)
    root.set("time", _seconds(sum(r.seconds or 0.0 for r in results)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render(verdict: Verdict) -> str:
    """One verdict; no timing known (the command line uses :func:`render_scan` with a timed result)."""
    from ..scan import TrialResult

    return _document([TrialResult(verdict.trial, verdict=verdict)])


def render_scan(results: Sequence[TrialResult]) -> str:
    return _document(results)
