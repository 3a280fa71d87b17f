"""The Check interface and the result every criterion returns.

A check is split in two so that the reading and the judging stay apart:
``measure`` reduces the tensors of one step to a small figure (it may stream
from disk), ``judge`` turns the figures of all analysed steps into a
:class:`CriterionResult` and is a pure function. ``--follow`` calls ``judge``
again as each step arrives.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import field
from enum import Enum
from typing import Any, ClassVar

from ..errors import ParameterError
from ..params import RuleParams
from ..records import record
from ..trial import Tensor


class Status(str, Enum):
    """What a criterion concluded. NOT_APPLICABLE always carries a reason."""

    FIRED = "fired"
    PASSED = "passed"
    NOT_APPLICABLE = "not_applicable"


# Seconds one regex may take to match one tensor name.
REGEX_SECONDS = 1.0
# Tensor names whose match a selector remembers (a step file lists at most
# trial.MAX_TENSORS): past it, names are matched again each time.
MATCHES_KEPT = 16_384
_MATCHED: dict[tuple[str, ...], dict[str, bool]] = {}


@functools.lru_cache(maxsize=256)  # a scan builds selectors for every trial, of the same few patterns
def _bounded(pattern: str) -> Any:
    """The pattern compiled so that no tensor name can make a match take long.

    A pattern that ``re`` matches in time linear in the name (:func:`_linear`:
    the defaults, ``.*relu_input`` and its kin) is compiled by ``re``; any
    other by the ``regex`` package, whose matching takes a timeout (Python's
    ``re`` cannot be interrupted), with ``re``'s syntax. ``regex`` is imported
    only then: its import costs more than judging a small trial's step file.

    ``.`` matches every character, a line break too (DOTALL): a tensor name
    comes from the file, and a name like ``net.9\n.relu_input`` must not slip
    past ``.*relu_input`` and leave its layer unjudged."""
    if _linear(pattern):
        return _Unbounded(re.compile(pattern, re.DOTALL))
    try:
        import regex
    except ImportError:  # an environment installed before the dependency was added: unbounded, as before
        return _Unbounded(re.compile(pattern, re.DOTALL))
    try:
        return regex.compile(pattern, flags=regex.VERSION0 | regex.DOTALL)
    except regex.error:  # the few patterns only re accepts: matched by re, without a bound
        return _Unbounded(re.compile(pattern, re.DOTALL))


# Backtracking paths a pattern matched by ``re`` may have besides its one unbounded repeat (_linear).
LINEAR_PATHS = 64
_ANCHORS = ("AT_BEGINNING", "AT_BEGINNING_STRING", "AT_END", "AT_END_STRING")


def _linear(pattern: str) -> bool:
    """Whether ``re.match`` of ``pattern`` takes time linear in the name, and
    matches exactly as ``regex`` (VERSION0) would.

    Backtracking explores the pattern's choices: an unbounded repeat of one
    character (``.*``) gives as many as the name has characters, an
    alternation or a bounded repeat a fixed number. With at most one unbounded
    repeat, of a single character, and few other choices (at most
    LINEAR_PATHS combinations, each consuming a bounded number of characters),
    a match costs at most that many passes over the name. Nested repeats,
    repeats of groups, backreferences and lookarounds are left to ``regex``
    and its timeout, and so are character categories (``\\w``, ``\\b``) and
    case-insensitive matching, where ``re`` and ``regex`` differ on some
    Unicode characters."""
    try:
        from re import _parser as parser  # type: ignore[attr-defined]
        from re._constants import MAXREPEAT  # type: ignore[import-not-found]
    except ImportError:  # Python 3.10
        import sre_parse as parser  # type: ignore[no-redef]
        from sre_constants import MAXREPEAT  # type: ignore[no-redef]
    try:
        parsed = parser.parse(pattern, re.DOTALL)
    except (re.error, RecursionError, OverflowError):
        return False
    if parsed.state.flags & (re.IGNORECASE | re.LOCALE):
        return False
    unbounded = 0

    def one_character(item: tuple[Any, Any]) -> bool:
        op, arg = item
        name = getattr(op, "name", str(op))
        if name in ("LITERAL", "NOT_LITERAL", "ANY"):
            return True
        if name == "IN":
            return all(getattr(inner, "name", str(inner)) in ("LITERAL", "RANGE", "NEGATE") for inner, _ in arg)
        return False

    def paths(items: Any) -> int | None:
        nonlocal unbounded
        total = 1
        for op, arg in items:
            name = getattr(op, "name", str(op))
            if one_character((op, arg)):
                continue
            if name == "AT":
                if getattr(arg, "name", str(arg)) not in _ANCHORS:
                    return None
                continue
            if name == "SUBPATTERN":
                count = paths(arg[-1])
            elif name == "BRANCH":
                counts = [paths(alternative) for alternative in arg[1]]
                count = None if None in counts else sum(counts)  # type: ignore[arg-type]
            elif name in ("MAX_REPEAT", "MIN_REPEAT"):
                low, high, body = arg
                if len(body) != 1 or not one_character(body[0]):
                    return None
                if high == MAXREPEAT:
                    unbounded += 1
                    count = 1
                else:
                    count = high - low + 1 if high <= LINEAR_PATHS else None
            else:  # backreferences, lookarounds, conditionals, atomic groups, possessive repeats
                return None
            if count is None:
                return None
            total *= count
            if total > LINEAR_PATHS:
                return None
        return total

    return paths(parsed) is not None and unbounded <= 1


class _Unbounded:
    def __init__(self, compiled: re.Pattern[str]) -> None:
        self._compiled = compiled

    def match(self, name: str, timeout: float | None = None) -> Any:
        return self._compiled.match(name)


@record
class Selector:
    """Which tensors a check reads.

    With ``patterns`` a tensor is chosen by name (``re.match``: anchored at the
    start, like SageMaker Debugger) and must not be marked with collections that
    exclude ``collection``; without patterns, by ``collection`` alone. A tensor
    with no collection marks is judged by its name only.
    """

    collection: str
    patterns: tuple[str, ...] = ()
    label: str = ""  # how reports name the selection, when the regexes say it badly

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple(_bounded(p) for p in self.patterns))
        # name -> whether it matches: the same names recur at every step of
        # every trial, and a match with a time limit costs ~50 us.
        # Shared by the selectors of the same patterns: a scan builds new checks for every trial.
        matched = _MATCHED.get(self.patterns)
        if matched is None:
            matched = {} if len(_MATCHED) >= MATCHES_KEPT else _MATCHED.setdefault(self.patterns, {})
        object.__setattr__(self, "_matched", matched)

    def _name_matches(self, name: str) -> bool:
        matched: dict[str, bool] = self._matched  # type: ignore[attr-defined]
        known = matched.get(name)
        if known is None:
            known = self._match(name)
            if len(matched) < MATCHES_KEPT:
                matched[name] = known
        return known

    def _match(self, name: str) -> bool:
        # A tensor name comes from the file: with a regex like (a+)+$ a long
        # name would backtrack for ever, so each match has a time limit.
        for pattern, compiled in zip(self.patterns, self._compiled, strict=True):  # type: ignore[attr-defined]
            try:
                if compiled.match(name, timeout=REGEX_SECONDS):
                    return True
            except TimeoutError:
                shown = name if len(name) <= 80 else f"{name[:80]}... ({len(name)} characters)"
                raise ParameterError(
                    f"regex {pattern!r} takes more than {REGEX_SECONDS:g} s to match the tensor name {shown!r} "
                    "(catastrophic backtracking, as with nested quantifiers like (a+)+); simplify the regex"
                ) from None
        return False

    def matches(self, name: str, collections: Sequence[str]) -> bool:
        if not self.patterns:
            return self.collection in collections
        if not self._name_matches(name):
            return False
        return not collections or self.collection in collections

    def wrong_collection(self, name: str, collections: Sequence[str]) -> bool:
        """Matched by name but marked as another collection (worth telling the user)."""
        return bool(
            self.patterns
            and collections
            and self.collection not in collections
            and self._name_matches(name)
        )

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.patterns:
            return "regex " + ", ".join(repr(p) for p in self.patterns)
        return f"collection {self.collection!r}"


@record
class CriterionResult:
    """One criterion's conclusion: status, the figure against the limit, the culprit.

    ``relation`` reads "figure RELATION limit fires", e.g. ``">"`` for the
    variance ratio and ``"<"`` for the gradient spread. ``per_step`` holds the
    figure of every analysed step, for plots and for ``--follow``.
    ``direction`` says which way a fired criterion points, so that a remedy
    can be chosen without parsing the reason: ``"collapse"`` (too small a
    start), ``"explode"`` (too large), ``"symmetric"``, ``"saturated"``,
    ``"dead"``, or ``""`` when there is nothing to say.
    """

    check: str
    title: str
    status: Status
    reason: str
    figure: float | None = None
    limit: float | None = None
    relation: str = ""
    step: int | None = None
    tensor: str | None = None
    per_step: tuple[tuple[int, float], ...] = field(default=())
    # What to change, for a fired criterion (poorinit/remedy.py); set by the analysis, not the check.
    remedy: str | None = None
    direction: str = ""
    # Not applicable because the network has nothing this criterion judges (saturation on a
    # network without bounded activations): a fact about the network, not a blind spot, so
    # --strict does not fail on it. A criterion that could not look leaves this False.
    absent: bool = False

    @property
    def fired(self) -> bool:
        return self.status is Status.FIRED


class Check(ABC):
    """A criterion of the rule. Subclass, then register under ``poorinit.checks``.

    Class attributes describe the check (shown by ``poorinit checks`` and in
    reports). ``fires_early`` says that once ``judge`` fires, later steps cannot
    undo it, so ``--follow`` may stop at once instead of waiting for every step.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    fires_early: ClassVar[bool] = False
    # The layers this check judges may legitimately be missing from a network (saturation:
    # ReLU networks have no bounded activation). When other tensors of its collection were
    # recorded but none matched, it is "absent", not "could not look".
    optional_subject: ClassVar[bool] = False

    def __init__(self, params: RuleParams) -> None:
        self.params = params
        # The trial's root attributes (e.g. ``num_classes``), as the first analysed
        # step file has them; set by the analysis before any step is measured.
        self.trial_attrs: Mapping[str, Any] = {}

    @abstractmethod
    def selector(self) -> Selector:
        """The tensors this check reads."""

    @abstractmethod
    def measure(self, step: int, tensors: Mapping[str, Sequence[Tensor]]) -> Any:
        """Reduce one step's selected tensors (name -> one per worker) to a figure."""

    @abstractmethod
    def judge(self, measures: Mapping[int, Any]) -> CriterionResult:
        """Conclude from the figures of the steps that had data (never empty)."""

    def result(self, status: Status, reason: str, **fields: Any) -> CriterionResult:
        return CriterionResult(self.name, self.title, status, reason, **fields)
