"""The command line: parse, call the core, render, choose the exit code.

Exit codes (docs/cli.md): 0 the rule did not fire, 1 it fired, 2 the input
could not be analysed or the command was misused. Reports go to stdout;
errors go to stderr as one line, with a traceback only under ``--debug``.
Heavy modules (numpy, h5py, rich) are imported inside the commands so that
``poorinit --version`` starts as fast as Python does.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import click

from . import __version__
from .config import FORMATS as FORMAT_NAMES
from .config import SETTINGS
from .errors import OutOfMemoryError, PoorinitError, memory_exhausted
from .format import MODES

EXIT_PASSED, EXIT_FIRED, EXIT_ERROR = 0, 1, 2
# Stopped by a signal: 128 + its number, as a shell reports it (SIGTERM gives 143).
EXIT_INTERRUPTED = 130

# Every setting option defaults to None, meaning "not given here": the value
# then comes from the environment, the config file or the built-in default
# (poorinit/config.py), and `poorinit config` tells which.
RULE_OPTIONS: dict[str, dict[str, Any]] = {
    "activation_inputs_regex": {"metavar": "REGEX[,REGEX]"},
    "threshold": {"metavar": "RATIO"},
    "distribution_range": {"metavar": "WIDTH"},
    "patience": {"metavar": "N"},
    "steps": {"metavar": "N"},
    "gradient_regex": {"metavar": "REGEX[,REGEX]"},
    "loss_regex": {"metavar": "REGEX[,REGEX]"},
    "mode": {"type": click.Choice(MODES)},
    "num_classes": {"metavar": "K"},
}
RUN_OPTIONS: dict[str, dict[str, Any]] = {
    # Repeatable: `--format junit --output a.xml --format markdown --output b.md`.
    "format": {"type": click.Choice(FORMAT_NAMES), "multiple": True},
    "jobs": {"type": click.IntRange(min=1), "metavar": "N"},
    "scheduler": {"metavar": "ADDRESS"},
    "timeout": {"type": click.FloatRange(min=0, min_open=True), "metavar": "SECONDS"},
    "poll_interval": {"type": click.FloatRange(min=0, min_open=True), "metavar": "SECONDS"},
    "trial_timeout": {"type": click.FloatRange(min=0, min_open=True), "metavar": "SECONDS"},
}
GATE_OPTIONS: dict[str, dict[str, Any]] = {
    "select": {"metavar": "NAME[,NAME]"},
    "ignore": {"metavar": "NAME[,NAME]"},
    "strict": {"is_flag": True},
    "exit_zero": {"is_flag": True},
}
COLOR_CHOICES = ("auto", "always", "never")


def setting_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options for settings (poorinit/config.py); SageMaker's rule names in kebab case."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            setting = SETTINGS[name]
            extra = {**RULE_OPTIONS, **RUN_OPTIONS, **GATE_OPTIONS}[name]
            shown = setting.default not in (None, False)
            default = f" [default: {setting.default}]" if shown else ""
            dest = "fmt" if name == "format" else name
            command = click.option(setting.option, dest, default=None, help=f"{setting.help}{default}",
                                   **extra)(command)
        return command

    return decorate


rule_options = setting_options(*RULE_OPTIONS)
gate_options = setting_options(*GATE_OPTIONS)
debug_option = click.option("--debug", is_flag=True, help="Show a traceback on errors.")
config_option = click.option("--config", "config_file", metavar="FILE",
                             help="Read settings from FILE instead of the nearest pyproject.toml [tool.poorinit].")
output_option = click.option("--output", "-o", "outputs", metavar="FILE", multiple=True,
                             help="Write the report to FILE (repeatable: the i-th --output gets the i-th --format); "
                                  "the terminal still gets the table.")
append_option = click.option("--append", is_flag=True,
                             help="Append to the --output files instead of replacing them (always done for "
                                  "$GITHUB_STEP_SUMMARY).")
quiet_option = click.option("--quiet", "-q", is_flag=True,
                            help="On the terminal, print only the verdict line (warnings still go to stderr).")
verbose_option = click.option("--verbose", "-v", is_flag=True,
                              help="Also report criteria that are not applicable where a format leaves them out "
                                   "(GitHub notices).")
statistics_option = click.option("--statistics", is_flag=True,
                                 help="Also print how often each criterion fired, passed or was not applicable.")
color_option = click.option("--color", type=click.Choice(COLOR_CHOICES), default="auto", show_default=True,
                            help="Colour the terminal output: auto follows the terminal, NO_COLOR and FORCE_COLOR.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="poorinit", message="%(prog)s %(version)s")
def cli() -> None:
    """Tell from the first training steps whether a network was poorly initialised.

    Exit codes: 0 the rule did not fire, 1 it fired, 2 the input could not be
    analysed or the command was misused.
    """


def _numerics() -> None:
    """Import numpy now, first thing in a command that reads a trial.

    Where a module is imported from changes what its import costs. CPython
    keeps Python frames in 16 KiB chunks and frees a chunk as soon as the frame
    that opened it returns; numpy's import makes some two thousand short calls
    (its typing aliases), and imported at the depth of poorinit's own import
    chain (cli, click, analysis, checks, trial, numpy) each of them opened and
    freed a chunk: an mmap, a page fault and a munmap, about 1,700 of them and
    30 ms of `poorinit analyze` (interleaved runs, 314 against 284 ms; strace
    counts 1,698 16 KiB maps against 2). Imported here, near the bottom of
    the stack, those calls fit in the first chunk. Not h5py: step files in
    poorinit's own layout are read without it (h5direct.py), and it is
    imported where a file needs it.
    """
    import numpy  # noqa: F401


def _warn(message: str) -> None:
    from .escape import stderr_line

    # A newline or an escape sequence can only come from a name: shown escaped, on this one line.
    click.echo(f"poorinit: warning: {stderr_line(message.strip())}", err=True)


def _settings(config_file: str | None, values: dict[str, Any]) -> Any:
    from .config import resolve, unknown_environment

    given = {("format" if key == "fmt" else key): value for key, value in values.items()}
    if isinstance(given.get("format"), tuple):  # repeatable on the command line: see _targets
        given["format"] = given["format"][0] if len(given["format"]) == 1 else None
    for problem in unknown_environment():
        _warn(problem)
    return resolve(given, config_file=config_file)


def _checks(settings: Any) -> list[Any] | None:
    """The criteria --select/--ignore leave; None (all, plugins included) when neither is set."""
    select, ignore = settings.value("select"), settings.value("ignore")
    if select is None and not ignore:
        return None
    from .checks.registry import load_checks
    from .config import choose_checks

    return choose_checks(select, ignore, load_checks())


class Report:
    """Where a report goes: stdout, or a FILE, which holds a whole report or nothing new.

    A file is touched only when there is something to write, so a trial that
    cannot be analysed leaves no file behind. A report replacing a regular
    file is written to a temporary file beside it and renamed over it once
    complete: a full disk or a signal mid-write leaves the old file (or none),
    never half a report. Appending (``--append``, and always for
    $GITHUB_STEP_SUMMARY, which collects the reports of every step of a job)
    and streaming (JSON lines, written as each trial ends) write to the file
    itself, one whole chunk at a time: a chunk that does not fit is cut off
    again, so the file keeps only whole chunks. Devices, pipes and other
    files that are not regular are written directly (there is nothing to
    rename over a FIFO or /dev/stdout).
    """

    def __init__(self, path: str | None, append: bool = False, streamed: bool = False, what: str = "report") -> None:
        self.path = path
        self.what = what  # in the error: "cannot write the report", "cannot write the plot"
        self.append = append or (path is not None and _is_step_summary(path))
        self.streamed = streamed
        self._fd = -1
        self._temporary: str | None = None  # the file renamed over path on close()
        self._direct = False

    def write(self, text: str | bytes) -> None:
        """Write ``text`` whole, or raise PoorinitError leaving the file as it was before this call."""
        if self.path is None:
            click.echo(text, nl=False)
            return
        data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
        if self._fd < 0:
            self._open()
        self._write_chunk(data)

    def _open(self) -> None:
        import os
        import stat
        import tempfile

        assert self.path is not None
        try:
            info: os.stat_result | None = os.stat(self.path)
        except OSError:
            info = None
        regular = info is None or stat.S_ISREG(info.st_mode)
        try:
            if self.append or self.streamed or not regular:
                flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                flags |= os.O_APPEND if self.append else (os.O_TRUNC if regular else 0)
                self._fd = os.open(self.path, flags, 0o666)
                self._direct = True
                return
            # Beside the target (the real file, through any symbolic link), so that rename() replaces it at once.
            target = os.path.realpath(self.path)
            directory, name = os.path.split(target)
            try:
                self._fd, self._temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp",
                                                             dir=directory or ".")
            except PermissionError:
                if info is None or not os.access(target, os.W_OK):
                    raise
                # A writable file in a directory this user may not write to: in place, as open() would.
                self._fd = os.open(target, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
                self._direct = True
                return
            # mkstemp creates 0600; a report gets what open() would give it (or the mode of the file it replaces).
            mode = stat.S_IMODE(info.st_mode) if info is not None else 0o666 & ~_umask()
            os.fchmod(self._fd, mode)
        except OSError as error:
            self._discard()
            raise self._unwritable(error) from None

    def _write_chunk(self, data: bytes) -> None:
        import os

        start = -1
        if self._direct:
            try:
                start = os.lseek(self._fd, 0, os.SEEK_END)
            except OSError:
                start = -1  # a pipe or a device: nothing to cut back
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as error:
            if start >= 0:
                with suppress(OSError):
                    os.ftruncate(self._fd, start)  # only whole chunks stay in the file
            self._discard()
            raise self._unwritable(error) from None

    def close(self) -> None:
        """Finish the report: the temporary file renamed over the target, once all of it is on disk."""
        import os

        if self._fd < 0:
            return
        try:
            if self._temporary is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
                os.replace(self._temporary, os.path.realpath(self.path or ""))
                self._temporary = None
            else:
                os.close(self._fd)
                self._fd = -1
        except OSError as error:
            self._discard()
            raise self._unwritable(error) from None

    def discard(self) -> None:
        """Give up a report that will not be complete (an error or a signal came first): the target is untouched."""
        self._discard()

    def _discard(self) -> None:
        import os

        if self._fd >= 0:
            with suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self._temporary is not None:
            with suppress(OSError):
                os.unlink(self._temporary)
            self._temporary = None

    def _unwritable(self, error: OSError) -> PoorinitError:
        return PoorinitError(f"{self.path}: cannot write the {self.what} ({error.strerror or error})")

    def __enter__(self) -> Report:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _is_step_summary(path: str) -> bool:
    """Is ``path`` the file GitHub Actions names in $GITHUB_STEP_SUMMARY (which must only grow)?"""
    import os

    summary = os.environ.get("GITHUB_STEP_SUMMARY", "")
    if not summary:
        return False
    try:
        return os.path.samefile(path, summary)
    except OSError:
        return os.path.abspath(path) == os.path.abspath(summary)


class Target:
    """One report of a run: a format and its file (None: stdout)."""

    def __init__(self, fmt: Any, path: str | None) -> None:
        self.fmt = fmt
        self.path = path


def _targets(formats: tuple[str, ...], outputs: tuple[str, ...], configured: str) -> list[Target]:
    """Pair the i-th --output with the i-th --format; one format left over goes to stdout.

    Without --format the configured format is used (``[tool.poorinit] format``,
    ``POORINIT_FORMAT``, else ``table``).
    """
    import os

    from .report import Format

    chosen = [Format(f) for f in formats] or [Format(configured)]
    if len(outputs) > len(chosen):
        raise click.UsageError(f"{len(outputs)} --output but {len(chosen)} --format: give each --output its own "
                               "--format (the i-th --output gets the i-th --format)")
    leftover = chosen[len(outputs):]
    if len(leftover) > 1:
        raise click.UsageError("only one report can go to stdout: give every --format but the last an --output")
    if len({os.path.abspath(o) for o in outputs}) < len(outputs):
        raise click.UsageError("two reports cannot go to the same --output file")
    return [*(Target(f, o) for f, o in zip(chosen, outputs, strict=False)), *(Target(f, None) for f in leftover)]


def _stdout_target(targets: list[Target]) -> Target | None:
    return next((t for t in targets if t.path is None), None)


def _deliver(targets: list[Target], render: Callable[[Any], str], terminal: Callable[[], None], append: bool,
             skip: Any = None) -> None:
    """Each report to its file, then stdout: a machine format alone, or the terminal's table.

    The table (or verdict line) is drawn when stdout is not taken by another
    format: always when every report has its --output.
    """
    from .report import Format

    for target in targets:
        if target.path is None or target.fmt is skip:
            continue
        text = render(target.fmt)
        with Report(target.path, append) as report:
            report.write(text)
    on_stdout = _stdout_target(targets)
    if on_stdout is None or on_stdout.fmt is Format.TABLE:
        terminal()
    elif on_stdout.fmt is not skip:
        click.echo(render(on_stdout.fmt), nl=False)


def _terminal(quiet: bool, color: str, table: Callable[[], Any], line: Callable[[], Any],
              plain: Callable[[bool], str | None] | None = None) -> None:
    """The table on stdout, or with --quiet only the verdict line, unwrapped (one line for grep).

    Into a pipe or a file without colour, ``plain`` draws the same text
    without rich (whose import costs more than a small trial's analysis)."""
    from .report.console import make_console, plain_stdout

    if plain is not None and plain_stdout(color):
        text = plain(quiet)
        if text is not None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
    console = make_console(color=color)
    if quiet:
        console.print(line(), soft_wrap=True)
    else:
        console.print(table())


def _table() -> Any:
    """The rich table module, imported only when a table is drawn (rich is slow to import)."""
    from .report import table

    return table


def _stderr_console(color: str = "auto") -> Any:
    from .report.console import make_console

    return make_console(stderr=True, color=color)


def _render(fmt: Any, results: list[Any], verbose: bool, scan: bool) -> str:
    """One format's text: a verdict's report for analyze, a scan's for scan.

    JUnit always goes through the timed result (its suite has time and
    timestamp); GitHub takes --verbose.
    """
    from .report import Format, formatter, github, junit, scan_formatter

    if fmt is Format.JUNIT:
        return junit.render_scan(results)
    if fmt is Format.GITHUB:
        return github.render_scan(results, verbose) if scan else github.render(results[0].verdict, verbose)
    if scan:
        return scan_formatter(fmt)(results)
    return formatter(fmt)(results[0].verdict)


def _verdict_warnings(results: list[Any]) -> None:
    """Every verdict warning on stderr, --quiet or not: 'analysed 7 of steps=10' must not pass unseen."""
    for r in results:
        if r.verdict is not None:
            for warning in r.verdict.warnings:
                _warn(f"{r.trial}: {warning}")


def _gate(results: list[Any], strict: bool, exit_zero: bool) -> int:
    """The exit code: 1 if a trial fired (or, --strict, passed on less than every criterion or with a
    warning), else 2 if one could not be analysed, else 0. --exit-zero turns every 1 into 0."""
    from .checks.base import Status

    codes = []
    for r in results:
        if r.verdict is None:
            codes.append(EXIT_ERROR)
            continue
        if r.verdict.fired:
            codes.append(EXIT_FIRED)
            continue
        # A criterion whose layers the network does not have (absent) is no blind spot.
        missing = [c.title for c in r.verdict.criteria if c.status is Status.NOT_APPLICABLE and not c.absent]
        if strict and (missing or r.verdict.warnings):
            parts = []
            if missing:
                parts.append(f"{len(missing)} of {len(r.verdict.criteria)} criteria not applicable "
                             f"({', '.join(missing)})")
            if r.verdict.warnings:
                parts.append(f"{len(r.verdict.warnings)} warning{'s' if len(r.verdict.warnings) > 1 else ''}")
            fate = "reported only (--exit-zero)" if exit_zero else "failing the gate (exit 1)"
            from .escape import stderr_line

            click.echo(stderr_line(f"poorinit: strict: {r.trial}: passed with {' and '.join(parts)}; {fate}"),
                       err=True)
            codes.append(EXIT_FIRED)
            continue
        codes.append(EXIT_PASSED)
    if exit_zero:
        codes = [EXIT_ERROR if code == EXIT_ERROR else EXIT_PASSED for code in codes]
    if EXIT_FIRED in codes:
        return EXIT_FIRED
    if EXIT_ERROR in codes or not codes:
        return EXIT_ERROR
    return EXIT_PASSED


def _statistics(results: list[Any], on_stdout: bool, color: str) -> None:
    """Counts per criterion; on stdout beside the table, else on stderr (stdout holds a document)."""
    from .report.console import make_console
    from .report.statistics import renderable

    make_console(stderr=not on_stdout, color=color).print(renderable(results))


@cli.command()
@click.argument("trial", type=click.Path(path_type=str, readable=False))
@rule_options
@setting_options("format")
@output_option
@append_option
@quiet_option
@verbose_option
@gate_options
@statistics_option
@color_option
@config_option
@click.option("--follow", "-f", is_flag=True,
              help="Follow a trial that training is still writing: exit 1 as soon as the rule fires, "
                   "0 once every criterion passed on its steps.")
@setting_options("timeout", "poll_interval")
@click.option("--explain", is_flag=True,
              help="Add the per-layer diagnosis (std, variance ratio, dead and saturated units, weight scale vs "
                   "He/Glorot) at the first analysed step.")
@debug_option
def analyze(trial: str, fmt: tuple[str, ...], outputs: tuple[str, ...], append: bool, quiet: bool, verbose: bool,
            statistics: bool, color: str, config_file: str | None, follow: bool, explain: bool, debug: bool,
            **values: Any) -> int:
    """Apply the PoorWeightInitialization rule to TRIAL (a directory of step files)."""
    _numerics()
    import time

    from .report import Format
    from .scan import TrialResult

    settings = _settings(config_file, {"fmt": fmt, **values})
    if not follow:
        for name in ("timeout", "poll_interval"):
            if values[name] is not None:
                raise click.UsageError(f"--{name.replace('_', '-')} applies only with --follow")
    targets = _targets(fmt, outputs, settings.value("format"))
    params = settings.rule_params()
    checks = _checks(settings)
    started, clock = time.time(), time.perf_counter()
    if follow:
        if explain:
            raise click.UsageError("--explain does not apply with --follow (run analyze --explain once it ends)")
        verdict = _follow(trial, params, settings.value("timeout"), settings.value("poll_interval"), quiet, checks,
                          color)
    else:
        from .analysis import evaluate
        from .sources import open_trial

        verdict = evaluate(open_trial(trial), params, checks, explain=explain)
    result = TrialResult(verdict.trial, verdict=verdict, started=started, seconds=time.perf_counter() - clock)
    _verdict_warnings([result])
    _deliver(targets, lambda chosen: _render(chosen, [result], verbose, scan=False),
             lambda: _terminal(quiet, color, lambda: _table().renderable(verdict, show_warnings=False),
                               lambda: _table().verdict_line(verdict),
                               lambda quiet: (_table().plain_verdict_line(verdict) + "\n" if quiet
                                              else _table().plain_lines(verdict, show_warnings=False))),
             append)
    if statistics:
        on_stdout = _stdout_target(targets) is None or _stdout_target(targets).fmt is Format.TABLE  # type: ignore
        _statistics([result], on_stdout, color)
    return _gate([result], settings.value("strict"), settings.value("exit_zero"))


def _follow(trial: str, params: Any, timeout: float | None, poll_interval: float, quiet: bool, checks: Any,
            color: str) -> Any:
    from .follow import follow

    console = _stderr_console(color)
    if quiet or not console.is_terminal:
        return follow(trial, params, timeout=timeout, poll_interval=poll_interval, checks=checks)
    from . import escape

    with console.status(escape.rich_text(f"following {trial}: waiting for its first step")) as status:

        def show(follower: Any) -> None:
            status.update(escape.rich_text(f"following {trial}: {follower.analysed} of steps={params.steps} "
                                           "steps analysed"))

        return follow(trial, params, timeout=timeout, poll_interval=poll_interval, checks=checks, on_poll=show)


@cli.command()
@click.argument("trial", type=click.Path(path_type=str, readable=False))
@rule_options
@click.option("--output", "-o", "output", required=True, metavar="FILE",
              help="Write the plot to FILE: .png, .svg, or .html (the plot, the criteria and the diagnosis table).")
@click.option("--format", "fmt", type=click.Choice(["none", "markdown"]), default="none", show_default=True,
              help="markdown: also print the Markdown report on stdout, with the image linked by FILE's path.")
@click.option("--embed", is_flag=True, help="With --format markdown: embed the PNG as a data URI instead of a link.")
@config_option
@debug_option
def plot(trial: str, output: str, fmt: str, embed: bool, config_file: str | None, debug: bool, **values: Any) -> int:
    """Draw the evidence of TRIAL's verdict (needs the extra: pip install 'poorinit[plot]').

    Panels: activation variance per layer per step, gradient spread per step,
    loss per step with the patience windows, saturated/dead units per layer.
    Exits as analyze does: 0 passed, 1 fired, 2 could not analyse.
    """
    _numerics()
    from pathlib import Path

    from .analysis import evaluate
    from .plot import SUFFIXES, markdown, render
    from .trial import Trial

    if Path(output).suffix.lower() not in SUFFIXES:
        raise click.UsageError(f"--output must end in .png, .svg or .html, not {output!r}")
    if embed and (fmt != "markdown" or Path(output).suffix.lower() != ".png"):
        raise click.UsageError("--embed applies only with --format markdown and a .png output")
    settings = _settings(config_file, {**values})
    verdict = evaluate(Trial(trial), settings.rule_params(), explain=True)
    content = render(verdict, output)
    with Report(output, what="plot") as image:  # whole or not at all, as a report
        image.write(content)
    if fmt == "markdown":
        click.echo(markdown(verdict, output, content if embed else None), nl=False)
    else:
        click.echo(f"poorinit: {verdict.status}: plot written to {output}", err=True)
    return verdict.exit_code


@cli.command()
@click.argument("roots", nargs=-1, required=True, type=click.Path(path_type=str, readable=False), metavar="ROOT...")
@rule_options
@setting_options("format")
@output_option
@append_option
@quiet_option
@verbose_option
@gate_options
@statistics_option
@color_option
@config_option
@setting_options("jobs", "scheduler", "trial_timeout")
@debug_option
def scan(roots: tuple[str, ...], fmt: tuple[str, ...], outputs: tuple[str, ...], append: bool, quiet: bool,
         verbose: bool, statistics: bool, color: str, config_file: str | None, debug: bool, **values: Any) -> int:
    """Find every trial below each ROOT and analyse them in parallel, worst first.

    Exit 1 if any trial fired, else 2 if any could not be analysed, else 0.
    """
    import os

    from .format import step_file_name
    from .report import Format
    from .report.jsonl import line as jsonl_line
    from .scan import discover, scan_dask, scan_local, worst_first

    settings = _settings(config_file, {"fmt": fmt, **values})
    targets = _targets(fmt, outputs, settings.value("format"))
    params = settings.rule_params()
    checks = _checks(settings)
    found = discover(roots)
    for directory, problem in found.unreadable:
        _warn(f"{directory}: cannot be listed ({problem}); skipped")
    if not found.trials:
        raise PoorinitError(
            f"no trials found below {', '.join(roots)} (a trial is a directory of step files named like "
            f"{step_file_name(0)}, or a SageMaker Debugger trial)"
        )

    # JSON lines are written as each trial is analysed, to their file or stdout.
    streamed = next((t for t in targets if t.fmt is Format.JSONL), None)
    stream = Report(streamed.path, append, streamed=True) if streamed is not None else None
    on_stdout = _stdout_target(targets)
    console = _stderr_console(color)
    jsonl_on_terminal = streamed is not None and streamed.path is None and sys.stdout.isatty()
    show_progress = console.is_terminal and not quiet and not jsonl_on_terminal
    try:
        with _progress(console, len(found.trials), show_progress) as advance:

            def on_result(result: Any) -> None:
                if stream is not None:
                    stream.write(jsonl_line(result))
                advance()

            scheduler = settings.value("scheduler")
            trial_timeout = settings.value("trial_timeout")
            if scheduler is not None:
                results = scan_dask(found.trials, params, scheduler, on_result, checks, trial_timeout)
            else:
                jobs = settings.value("jobs") or os.cpu_count() or 1
                results = scan_local(found.trials, params, jobs, on_result, checks, trial_timeout)
    finally:
        if stream is not None:
            stream.close()
    results = worst_first(results)
    _verdict_warnings(results)
    _deliver(targets, lambda chosen: _render(chosen, results, verbose, scan=True),
             lambda: _terminal(quiet, color, lambda: _table().scan_renderable(results),
                               lambda: _table().scan_line(results)),
             append, skip=Format.JSONL)
    if statistics:
        _statistics(results, on_stdout is None or on_stdout.fmt is Format.TABLE, color)
    return _gate(results, settings.value("strict"), settings.value("exit_zero"))


class _progress:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, console: Any, total: int, enabled: bool) -> None:
        self._progress: Any = None
        self._task: Any = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=console, transient=True, redirect_stdout=False, redirect_stderr=False)
            self._task = self._progress.add_task("scan", total=total)

    def __enter__(self) -> Callable[[], None]:
        if self._progress is None:
            return lambda: None
        self._progress.start()
        return lambda: self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


@cli.command("config")
@rule_options
@setting_options("jobs", "scheduler", "trial_timeout", "timeout", "poll_interval")
@gate_options
@config_option
@click.option("--format", "output_format", type=click.Choice(["toml", "json"]), default="toml", show_default=True,
              help="Print a [tool.poorinit] table (sources as comments) or JSON.")
@click.option("--json", "as_json", is_flag=True, hidden=True, help="Same as --format json (kept for old scripts).")
def config_command(config_file: str | None, output_format: str, as_json: bool, **values: Any) -> int:
    """Print the effective settings and where each came from.

    Precedence: command line, then environment (POORINIT_<OPTION>), then the
    config file (--config FILE, else [tool.poorinit] of the nearest
    pyproject.toml), then the built-in defaults. The report format setting
    comes from the environment or the config file here: --format chooses how
    this command prints.
    """
    from .config import render_json, render_toml

    settings = _settings(config_file, values)
    as_json = as_json or output_format == "json"
    click.echo(render_json(settings) if as_json else render_toml(settings), nl=False)
    return EXIT_PASSED


@cli.command()
@click.argument("trial", type=click.Path(path_type=str, readable=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@color_option
@debug_option
def inspect(trial: str, fmt: str, color: str, debug: bool) -> int:
    """List the steps, modes, workers and tensors of TRIAL."""
    _numerics()
    from .inspect import describe, render_json, render_table

    description = describe(trial)
    if fmt == "json":
        click.echo(render_json(description), nl=False)
    else:
        render_table(description, color=color)
    return EXIT_PASSED


@cli.command()
@click.argument("source", type=click.Path(path_type=str, readable=False), metavar="SMDEBUG_TRIAL")
@click.argument("target", type=click.Path(path_type=str, readable=False), metavar="OUT")
@debug_option
def convert(source: str, target: str, debug: bool) -> int:
    """Write the SageMaker Debugger trial SMDEBUG_TRIAL as a poorinit trial in the new directory OUT."""
    _numerics()
    from .convert import convert as convert_trial

    click.echo(convert_trial(source, target).line())
    return EXIT_PASSED


@cli.command()
@click.argument("name", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def checks(name: str | None, fmt: str) -> int:
    """List the criteria the rule applies (built-in and plugins), or explain the criterion NAME.

    For NAME: what it measures, its parameters and defaults, when it fires,
    what to do when it does, and where docs/rule.md decides its edge cases.
    """
    import json

    from .checks.registry import load_checks
    from .explain import explain, find_check

    available = load_checks()
    if name is not None:
        explanation = explain(find_check(name, available))
        if fmt == "json":
            click.echo(json.dumps(explanation.to_dict(), indent=2))
        else:
            click.echo(explanation.render(), nl=False)
        return EXIT_PASSED
    if fmt == "json":
        click.echo(json.dumps([explain(check).to_dict() for check in available], indent=2))
        return EXIT_PASSED
    for check in available:
        click.echo(f"{check.name}\t{check.title}\t{check.description}")
    return EXIT_PASSED


def _show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    _warn(str(message))


def _error(message: str) -> None:
    from .escape import stderr_line

    # A newline or an escape sequence can only come from a name: shown escaped, on this one line.
    click.echo(f"poorinit: error: {stderr_line(message.strip())}", err=True)


def _on_signal(signum: int, frame: Any) -> None:
    from .errors import Interrupted, Terminated

    raise Terminated if signum == signal.SIGTERM else Interrupted


def _catch_signals() -> dict[int, Any]:
    """SIGINT and SIGTERM raise here, so that cleanup runs (no orphan worker) and the exit code says which."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {number: signal.signal(number, _on_signal) for number in (signal.SIGINT, signal.SIGTERM)}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    from .errors import Interrupted

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    warnings.showwarning = _show_warning
    previous = _catch_signals()
    try:
        code = cli.main(args=args, prog_name="poorinit", standalone_mode=False)
    except Interrupted as stop:  # Ctrl-C: 130, SIGTERM: 143, as a shell reports a signal
        _error("terminated" if stop.exit_code == 143 else "interrupted")
        return stop.exit_code
    except click.exceptions.Exit as stop:  # --help, --version
        return stop.exit_code
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
        _error(f"{error.format_message()}{hint}")
        return EXIT_ERROR
    except click.ClickException as error:
        _error(error.format_message())
        return EXIT_ERROR
    except (click.Abort, KeyboardInterrupt):
        _error("interrupted")
        return EXIT_INTERRUPTED
    except PoorinitError as error:
        if debug:
            raise
        _error(str(error))
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader of our output went away (`| head`): not an error of ours.
        sys.stderr.close()
        return EXIT_ERROR
    except Exception as error:  # never a traceback for users, never exit 0
        if debug:
            raise
        reason = memory_exhausted(error)
        if reason is not None:  # not a bug, nor damage: one line that says so
            _error(str(OutOfMemoryError(reason)))
            return EXIT_ERROR
        _error(f"internal error: {type(error).__name__}: {error} (rerun with --debug and report it)")
        return EXIT_ERROR
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return code if isinstance(code, int) else EXIT_PASSED
