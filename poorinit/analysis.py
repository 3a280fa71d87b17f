"""Running the rule over a trial: the one place where checks meet files.

Each analysed step file is opened once; every check takes the tensors it
selects from it, and nothing else is read. :class:`Analysis` keeps the
per-step figures so a caller can add steps as they arrive (``--follow``) and
ask for the verdict at any point.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any

from . import format as fmt
from .checks.activations import depth_key
from .checks.base import Check, CriterionResult, Selector, Status
from .checks.registry import load_checks
from .errors import NothingToAnalyseError, OutOfMemoryError, memory_reason
from .params import RuleParams
from .records import record
from .rule import Verdict, conclude
from .trial import Tensor, Trial

if TYPE_CHECKING:
    from .diagnosis import Diagnosis, DiagnosisMeasurer
    from .sources import TrialReader


def _span(steps: Sequence[int]) -> str:
    if not steps:
        return "no steps"
    return f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"


def _gaps(steps: Sequence[int]) -> list[str]:
    pairs = zip(steps, steps[1:], strict=False)
    return [f"{a + 1}-{b - 1}" if b - a > 2 else str(a + 1) for a, b in pairs if b - a > 1]


@record
class StepMeasures:
    """What the checks measured at one step, before it joins the analysis."""

    step: int
    measures: dict[int, Any]  # check index -> figure
    names: set[str] = field(default_factory=set)
    wrong_collection: dict[int, set[str]] = field(default_factory=dict)
    collections: set[str] = field(default_factory=set)  # every collection a tensor of the step is in
    # The workers whose files were read, and tensor -> workers whose file lacked it.
    read_workers: frozenset[int] = frozenset()
    missing_tensors: dict[str, list[int]] = field(default_factory=dict)


def _missing_tensors(listings: Sequence[tuple[Any, Sequence[tuple[str, Any]]]]) -> dict[str, list[int]]:
    """Tensor -> the workers whose file at this step lacks it, though another worker's has it."""
    by_worker = {reader.step_file.worker: {name for name, _ in listed} for reader, listed in listings}
    missing = {}
    for name in set().union(*by_worker.values()):
        lacking = sorted(w for w, names in by_worker.items() if name not in names)
        if lacking:
            missing[name] = lacking
    return missing


class Analysis:
    """The rule applied to one trial, step by step."""

    def __init__(
        self, trial: TrialReader, params: RuleParams, checks: Iterable[type[Check]] | None = None, *,
        explain: bool = False
    ) -> None:
        self.trial = trial
        self.params = params
        self.checks = [cls(params) for cls in (load_checks() if checks is None else checks)]
        self._selectors: list[Selector] = [check.selector() for check in self.checks]
        self._measures: list[dict[int, Any]] = [{} for _ in self.checks]
        self._wrong_collection: list[set[str]] = [set() for _ in self.checks]
        self._names: set[str] = set()
        self._collections: set[str] = set()
        self.steps: list[int] = []
        # What each analysed step was judged on: the workers whose files were
        # read, and (step, tensor) -> workers whose file lacked the tensor.
        self._read_workers: dict[int, frozenset[int]] = {}
        self._missing_tensors: dict[tuple[int, str], list[int]] = {}
        # The per-layer diagnosis reads the first analysed step's files while they are open.
        self._diagnosis: DiagnosisMeasurer | None = None
        if explain:
            from .diagnosis import DiagnosisMeasurer

            self._diagnosis = DiagnosisMeasurer(params)

    def add_step(self, step: int) -> None:
        """Open the step's files (one per worker), let every check measure, close."""
        self.record(self.measure(step))

    def measure(self, step: int) -> StepMeasures:
        """Every check's figure for one step; changes nothing in this object
        (but the diagnosis of ``explain``, which evaluate() never runs on
        threads), so that several steps can be measured at once on threads."""
        readers = []
        measures: dict[int, Any] = {}
        names: set[str] = set()
        collections_seen: set[str] = set()
        wrong: dict[int, set[str]] = {}
        try:
            step_files = self.trial.step_files(step, self.params.mode)
            read_workers = frozenset(f.worker for f in step_files)
            for step_file in step_files:
                readers.append(self.trial.open(step_file))
            if readers and not any(check.trial_attrs for check in self.checks):
                # The first step file opened gives the trial's root attributes (num_classes).
                attrs = readers[0].attrs
                for check in self.checks:
                    check.trial_attrs = attrs
            listings = [(reader, reader.tensor_names()) for reader in readers]
            missing_tensors = _missing_tensors(listings) if len(listings) > 1 else {}
            if self._diagnosis is not None and self._diagnosis.measure is None:
                self._diagnosis.take(step, listings)
            for index, (check, selector) in enumerate(zip(self.checks, self._selectors, strict=True)):
                chosen: dict[str, list[Tensor]] = {}
                for reader, listed in listings:
                    for name, collections in listed:
                        names.add(name)
                        collections_seen.update(collections)
                        if selector.matches(name, collections):
                            chosen.setdefault(name, []).append(reader.tensor(name))
                        elif selector.wrong_collection(name, collections):
                            wrong.setdefault(index, set()).add(name)
                if chosen:
                    measures[index] = check.measure(step, chosen)
            if self._diagnosis is not None:
                known: dict[str, Any] = next((measures.get(i, {}) for i, c in enumerate(self.checks)
                              if c.name == "activation_variance"), {})
                self._diagnosis.take_variances(step, listings, known)
            # A file rewritten in place while it was read was read half old, half new.
            # (A reader of another format may have no such check.)
            for reader in readers:
                check_unchanged = getattr(reader, "check_unchanged", None)
                if check_unchanged is not None:
                    check_unchanged()
        except MemoryError as error:  # in a check's arithmetic, between reads: the step is known, the file not
            raise OutOfMemoryError(memory_reason(error), f"{self.trial.path}: step {step}", "analysing it") from None
        finally:
            for reader in readers:
                reader.close()
        return StepMeasures(step, measures, names, wrong, collections_seen, read_workers, missing_tensors)

    def record(self, measured: StepMeasures) -> None:
        """Add a step measured by :meth:`measure` (in step order; again, when --follow re-reads it)."""
        step = measured.step
        for index, figure in measured.measures.items():
            self._measures[index][step] = figure
        for index, names in measured.wrong_collection.items():
            self._wrong_collection[index] |= names
        self._names |= measured.names
        self._collections |= measured.collections
        self._read_workers[step] = measured.read_workers
        for key in [key for key in self._missing_tensors if key[0] == step]:
            del self._missing_tensors[key]
        for name, workers in measured.missing_tensors.items():
            self._missing_tensors[(step, name)] = workers
        if step not in self.steps:  # --follow may read a step again when a late file arrives
            self.steps.append(step)
            self.steps.sort()

    def stale_steps(self) -> list[int]:
        """Analysed steps whose files, as the trial is listed now, include a worker not read then.

        ``--follow`` reads them again: a worker's file for an early step may
        arrive late, and what it holds must count as ``analyze`` would count it.
        """
        mode = self.params.mode
        return [
            step for step in self.steps
            if {f.worker for f in self.trial.step_files(step, mode)} - self._read_workers.get(step, frozenset())
        ]

    def missing_workers(self) -> dict[int, list[int]]:
        """Analysed step -> the workers of the trial (as listed now) whose file it was judged without."""
        workers = self.workers()
        missing = {}
        for step in self.steps:
            read = self._read_workers.get(step, frozenset())
            lacking = [w for w in workers if w not in read]
            if lacking:
                missing[step] = lacking
        return missing

    @property
    def waiting_for_workers(self) -> bool:
        """Whether some analysed step still lacks the file of a worker the trial has."""
        return bool(self.missing_workers())

    def workers(self) -> list[int]:
        """The workers that wrote step files of the analysed mode, anywhere in the trial, and those the
        trial declares (root attribute ``workers``: ranks 0 to N-1), written or not: a worker that has
        written nothing yet is missing, not absent."""
        listed = list(self.trial.mode_workers(self.params.mode))
        declared = self.declared_workers()
        return sorted(set(listed) | set(range(declared))) if declared else listed

    def declared_workers(self) -> int | None:
        """The ``workers`` root attribute of the step files read, when it is a usable count."""
        attrs = next((check.trial_attrs for check in self.checks if check.trial_attrs), {})
        value = attrs.get(fmt.WORKERS_ATTR)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= fmt.MAX_DECLARED_WORKERS:
            return None  # optional metadata that cannot be used is not there (docs/format.md)
        return value

    @property
    def partial(self) -> bool:
        """Whether some analysed step lacks a worker's file, or a tensor some other worker wrote."""
        return self.waiting_for_workers or any(step in self.steps for step, _ in self._missing_tensors)

    def partial_warnings(self) -> list[str]:
        warnings = []
        by_worker: dict[int, list[int]] = {}
        for step, workers in sorted(self.missing_workers().items()):
            for worker in workers:
                by_worker.setdefault(worker, []).append(step)
        for worker, steps in sorted(by_worker.items()):
            shown = ", ".join(map(str, steps[:5])) + (" ..." if len(steps) > 5 else "")
            warnings.append(
                f"judged on part of the data: worker {worker} has no step file at steps {shown} "
                "(its data there is missing, not judged)"
            )
        missing = sorted(self._missing_tensors.items())
        for (step, name), workers in missing[:5]:
            warnings.append(
                f"judged on part of the data: tensor {name} at step {step} is missing from the file of worker "
                f"{', '.join(map(str, workers))} (other workers wrote it)"
            )
        if len(missing) > 5:
            warnings.append(f"judged on part of the data: {len(missing) - 5} more tensors missing for some workers")
        return warnings

    def results(self) -> list[CriterionResult]:
        results = []
        for check, selector, measures, wrong in zip(
            self.checks, self._selectors, self._measures, self._wrong_collection, strict=True
        ):
            if measures:
                results.append(check.judge(measures))
                continue
            reason = f"no tensor matched {selector.describe()} in {_span(self.steps)} of mode {self.params.mode}"
            if wrong:
                reason += f" (matched by name but marked as another collection: {', '.join(sorted(wrong)[:3])})"
            elif selector.collection == fmt.ACTIVATION_INPUTS and fmt.ACTIVATION_INPUTS not in self._collections:
                # Say what was missing at the source, not only that a regex found nothing.
                reason += ": no activation input was recorded (no tensor of collection 'activation_inputs')"
            elif check.optional_subject and selector.collection in self._collections:
                reason = (f"the network has no {selector.describe()} to judge: the recorded "
                          f"{selector.collection} are of other kinds")
                results.append(check.result(Status.NOT_APPLICABLE, reason, absent=True))
                continue
            results.append(check.result(Status.NOT_APPLICABLE, reason))
        return results

    def measures(self, check: str) -> dict[int, Any]:
        """A check's per-step figures (step -> what its ``measure`` returned), empty if it is not run."""
        for c, measures in zip(self.checks, self._measures, strict=True):
            if c.name == check:
                return measures
        return {}

    def diagnosis(self) -> Diagnosis:
        """The per-layer view; rows only when the analysis was made with ``explain=True``."""
        from .diagnosis import build

        variances = self._diagnosis.variances if self._diagnosis else self._layer_variances()
        return build(self._diagnosis.measure if self._diagnosis else None, self.params, variances,
                     self._layer_saturation())

    def _layer_variances(self) -> dict[int, dict[str, float]]:
        return {step: {name: m.variance for name, m in layers.items()}
                for step, layers in self.measures("activation_variance").items()}

    def _layer_saturation(self) -> dict[int, dict[str, float]]:
        return {step: {name: share.fraction for name, share in layers.items() if share.total}
                for step, layers in self.measures("saturation").items()}

    def holds(self) -> str:
        """What the analysed steps hold, for an error that must say what *is* there."""
        names = sorted(self._names)
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        return f"; the analysed steps hold: {shown or 'no tensors'} (see `poorinit inspect`)"

    def verdict(self) -> Verdict:
        warnings = []
        if len(self.steps) < self.params.steps:
            warnings.append(f"analysed {len(self.steps)} of steps={self.params.steps} steps: the trial has no more")
        gaps = _gaps(self.steps)
        if gaps:
            warnings.append(f"steps missing from the trial: {', '.join(gaps)}")
        for check, selector, measures in zip(self.checks, self._selectors, self._measures, strict=True):
            missing = [str(step) for step in self.steps if step not in measures]
            if measures and missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                warnings.append(f"{check.title}: no tensor matched {selector.describe()} at steps {shown}")
        warnings += self.partial_warnings()
        diagnosis = self.diagnosis() if self._diagnosis is not None else None
        results = self.results()
        if diagnosis is not None or any(c.fired for c in results):
            # Remedies are chosen only for a fired criterion: a passing trial (most runs, and every
            # trial of a clean scan) does not import the diagnosis and remedy modules at all.
            from .diagnosis import with_remedies
            from .remedy import kind_from_name

            kinds = [kind_from_name(name) for name in sorted(self._names, key=depth_key)]
            results = with_remedies(results, diagnosis, self._layer_variances(), kinds)
        return conclude(
            str(self.trial.path), self.params, self.steps, results, warnings, self.holds(), diagnosis,
            partial=self.partial,
        )


def analysed_steps(trial: TrialReader, params: RuleParams) -> list[int]:
    """The first ``steps`` steps of the mode present in the trial, by step number."""
    steps = trial.steps(params.mode)
    if not steps:
        modes = ", ".join(trial.modes) or "none"
        raise NothingToAnalyseError(f"{trial.path}: no step files of mode {params.mode!r} (modes present: {modes})")
    return steps[: params.steps]


def evaluate(
    trial: TrialReader, params: RuleParams, checks: Iterable[type[Check]] | None = None, *, explain: bool = False,
    threads: int | None = None,
) -> Verdict:
    """The verdict on the trial's first steps, measured on ``threads`` threads
    (default: :func:`analysis_threads`; one with ``explain``, whose diagnosis
    reads the first step as it goes)."""
    analysis = Analysis(trial, params, checks, explain=explain)
    steps = analysed_steps(trial, params)
    workers = analysis_threads(trial, params, steps) if threads is None else max(1, threads)
    if workers == 1 or explain:
        for step in steps:
            analysis.add_step(step)
    else:
        from .parallel import using

        try:
            # Steps in order, the tensors of each on ``workers`` threads (poorinit/parallel.py).
            with using(workers):
                for step in steps:
                    analysis.add_step(step)
        except RuntimeError as error:
            # No second thread to be had (its stack is address space: ulimit -v): one thread does it all.
            if "can't start new thread" not in str(error):
                raise
            for step in steps:
                if step not in analysis.steps:
                    analysis.add_step(step)
    return analysis.verdict()


# Below this many bytes of step files to read, a second thread costs more than it saves.
PARALLEL_BYTES = 32 << 20
# Threads measuring the tensors of a step at once: two cores are what the
# benchmark machine has; more would mostly add per-thread buffers.
MAX_THREADS = 2


def analysis_threads(trial: TrialReader, params: RuleParams, steps: Sequence[int]) -> int:
    """How many threads measure a step's tensors: one per core (at most MAX_THREADS) when
    the step files to read are large enough to pay for it.

    Threads, not processes: numpy releases the GIL in the statistics, h5py's
    reads are short, and a thread costs no start-up, no pickling and no second
    copy of numpy in memory."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(cores, MAX_THREADS)
    if workers < 2 or not isinstance(trial, Trial):
        # Other readers (SageMaker Debugger's format, remote stores) read on one thread.
        return 1
    total = 0
    for step in steps:
        for step_file in trial.step_files(step, params.mode):
            try:
                total += os.stat(step_file.path).st_size
            except (OSError, TypeError, ValueError):
                continue  # reported when the step is opened
            except AttributeError:
                continue  # a URL (poorinit.remote): read in order, one request at a time
            if total >= PARALLEL_BYTES:
                return workers
    return 1


def analyze(
    path: str | os.PathLike[str], *, checks: Iterable[type[Check]] | None = None, explain: bool = False,
    **params: Any
) -> Verdict:
    """Apply the PoorWeightInitialization rule to the trial at ``path``.

    With ``explain=True`` the verdict carries the per-layer diagnosis
    (``verdict.diagnosis``, poorinit/diagnosis.py). ``params`` are the rule's
    parameters (see :class:`~poorinit.params.RuleParams`), strings accepted as
    on the command line. Raises a :class:`~poorinit.errors.PoorinitError` when
    the trial cannot be analysed.
    """
    from .sources import open_trial

    return evaluate(open_trial(path), RuleParams.from_values(**params), checks, explain=explain)
