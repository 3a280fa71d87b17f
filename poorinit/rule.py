"""The verdict: criteria results -> fired / passed. Pure, no I/O.

The rule fires if any criterion fires. A criterion that cannot be evaluated
is "not applicable" and does not vote; if none can be evaluated there is no
verdict at all, only an error, because a CI gate must never pass on data it
did not see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .checks.base import CriterionResult, Status
from .errors import NothingToAnalyseError
from .params import RuleParams
from .records import record

if TYPE_CHECKING:
    from .diagnosis import Diagnosis


@record
class Verdict:
    """What ``poorinit.analyze`` returns and every report renders."""

    trial: str
    params: RuleParams
    steps: tuple[int, ...]
    criteria: tuple[CriterionResult, ...]
    warnings: tuple[str, ...] = ()
    # The per-layer view (poorinit/diagnosis.py), when it was asked for.
    diagnosis: Diagnosis | None = None
    # Judged on part of the data: some worker's step file or tensor was missing
    # at an analysed step (the warnings say which). A gate that must see
    # everything (``--strict``) fails on it.
    partial: bool = False

    @property
    def fired(self) -> bool:
        return any(c.fired for c in self.criteria)

    @property
    def passed(self) -> bool:
        """The rule did not fire (``not fired``): what a pre-flight unit test asserts."""
        return not self.fired

    @property
    def status(self) -> str:
        return "fired" if self.fired else "passed"

    @property
    def exit_code(self) -> int:
        """The CLI's contract: 1 when the rule fired, 0 when it did not."""
        return 1 if self.fired else 0

    def to_dict(self) -> dict[str, Any]:
        """The ``poorinit.verdict`` JSON document, as ``analyze --format json`` prints it (docs/cli.md)."""
        from .document import document

        return document(self)


def conclude(
    trial: str,
    params: RuleParams,
    steps: Sequence[int],
    criteria: Sequence[CriterionResult],
    warnings: Sequence[str] = (),
    holds: str = "",
    diagnosis: Diagnosis | None = None,
    partial: bool = False,
) -> Verdict:
    """Combine criteria into a verdict, or refuse when none could be evaluated."""
    if all(c.status is Status.NOT_APPLICABLE for c in criteria):
        reasons = "; ".join(f"{c.check}: {c.reason}" for c in criteria)
        raise NothingToAnalyseError(f"{trial}: no criterion could be evaluated ({reasons}){holds}")
    return Verdict(trial, params, tuple(steps), tuple(criteria), tuple(warnings), diagnosis, partial)
