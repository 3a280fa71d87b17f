"""The command line: parse, call the core, render, choose the exit code.

Exit codes (docs/cli.md): 0 the rule did not fire, 1 it fired, 2 the input
could not be analysed or the command was misused. Reports go to stdout;
errors go to stderr as one line, with a traceback only under ``--debug``.
Heavy modules (numpy, h5py, rich) are imported inside the commands so that
``poorinit --version`` starts as fast as Python does.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import click

from . import __version__
from .config import FORMATS as FORMAT_NAMES
from .config import SETTINGS
from .errors import PoorinitError
from .format import MODES

EXIT_PASSED, EXIT_FIRED, EXIT_ERROR = 0, 1, 2

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
}
RUN_OPTIONS: dict[str, dict[str, Any]] = {
    "format": {"type": click.Choice(FORMAT_NAMES)},
    "jobs": {"type": click.IntRange(min=1), "metavar": "N"},
    "scheduler": {"metavar": "ADDRESS"},
    "timeout": {"type": click.FloatRange(min=0, min_open=True), "metavar": "SECONDS"},
    "poll_interval": {"type": click.FloatRange(min=0, min_open=True), "metavar": "SECONDS"},
}


def setting_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options for settings (poorinit/config.py); SageMaker's rule names in kebab case."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            setting = SETTINGS[name]
            extra = {**RULE_OPTIONS, **RUN_OPTIONS}[name]
            default = "" if setting.default is None else f" [default: {setting.default}]"
            dest = "fmt" if name == "format" else name
            command = click.option(setting.option, dest, default=None, help=f"{setting.help}{default}",
                                   **extra)(command)
        return command

    return decorate


rule_options = setting_options(*RULE_OPTIONS)
debug_option = click.option("--debug", is_flag=True, help="Show a traceback on errors.")
config_option = click.option("--config", "config_file", metavar="FILE",
                             help="Read settings from FILE instead of the nearest pyproject.toml [tool.poorinit].")
output_option = click.option("--output", "-o", metavar="FILE",
                             help="Write the report to FILE; the terminal still gets the table.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="On the terminal, print only the verdict line.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="poorinit", message="%(prog)s %(version)s")
def cli() -> None:
    """Tell from the first training steps whether a network was poorly initialised.

    Exit codes: 0 the rule did not fire, 1 it fired, 2 the input could not be
    analysed or the command was misused.
    """


def _settings(config_file: str | None, values: dict[str, Any]) -> Any:
    from .config import resolve

    given = {("format" if key == "fmt" else key): value for key, value in values.items()}
    return resolve(given, config_file=config_file)


class Report:
    """Where the report text goes: stdout, or ``--output`` FILE opened at the first write."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._file: Any = None

    def write(self, text: str) -> None:
        if self.path is None:
            click.echo(text, nl=False)
            return
        try:
            if self._file is None:
                self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (kept open to stream)
            self._file.write(text)
            self._file.flush()
        except OSError as error:
            raise PoorinitError(f"{self.path}: cannot write the report ({error.strerror or error})") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _deliver(fmt: Any, output: str | None, quiet: bool, text: Callable[[], str], table: Callable[[], Any],
             line: Callable[[], Any]) -> None:
    """The report to stdout or --output; the table (or verdict line) to the terminal.

    The table is drawn when stdout is not taken by another format: always with
    --output, else only for --format table.
    """
    from .report import Format

    if output is not None:
        report = Report(output)
        try:
            report.write(text())
        finally:
            report.close()
    elif fmt is not Format.TABLE:
        click.echo(text(), nl=False)
        return
    _terminal(quiet, table, line)


def _terminal(quiet: bool, table: Callable[[], Any], line: Callable[[], Any]) -> None:
    """The table on stdout, or with --quiet only the verdict line, unwrapped (one line for grep)."""
    from .report.console import make_console

    console = make_console()
    if quiet:
        console.print(line(), soft_wrap=True)
    else:
        console.print(table())


def _table() -> Any:
    """The rich table module, imported only when a table is drawn (rich is slow to import)."""
    from .report import table

    return table


def _stderr_console() -> Any:
    from .report.console import make_console

    return make_console(stderr=True)


@cli.command()
@click.argument("trial", type=click.Path(path_type=str, readable=False))
@rule_options
@setting_options("format")
@output_option
@quiet_option
@config_option
@click.option("--follow", "-f", is_flag=True,
              help="Follow a trial that training is still writing: exit 1 as soon as the rule fires, "
                   "0 once every criterion passed on its steps.")
@setting_options("timeout", "poll_interval")
@click.option("--explain", is_flag=True,
              help="Add the per-layer diagnosis (std, variance ratio, dead and saturated units, weight scale vs "
                   "He/Glorot) at the first analysed step.")
@debug_option
def analyze(trial: str, fmt: str | None, output: str | None, quiet: bool, config_file: str | None, follow: bool,
            explain: bool, debug: bool, **values: Any) -> int:
    """Apply the PoorWeightInitialization rule to TRIAL (a directory of step files)."""
    from .report import Format, formatter

    settings = _settings(config_file, {"fmt": fmt, **values})
    if not follow:
        for name in ("timeout", "poll_interval"):
            if values[name] is not None:
                raise click.UsageError(f"--{name.replace('_', '-')} applies only with --follow")
    params = settings.rule_params()
    if follow:
        if explain:
            raise click.UsageError("--explain does not apply with --follow (run analyze --explain once it ends)")
        verdict = _follow(trial, params, settings.value("timeout"), settings.value("poll_interval"), quiet)
    else:
        from .analysis import evaluate
        from .sources import open_trial

        verdict = evaluate(open_trial(trial), params, explain=explain)
    chosen = Format(settings.value("format"))
    _deliver(chosen, output, quiet, lambda: formatter(chosen)(verdict), lambda: _table().renderable(verdict),
             lambda: _table().verdict_line(verdict))
    return verdict.exit_code


def _follow(trial: str, params: Any, timeout: float | None, poll_interval: float, quiet: bool) -> Any:
    from .follow import follow

    console = _stderr_console()
    if quiet or not console.is_terminal:
        return follow(trial, params, timeout=timeout, poll_interval=poll_interval)
    with console.status(f"following {trial}: waiting for its first step") as status:

        def show(follower: Any) -> None:
            status.update(f"following {trial}: {follower.analysed} of steps={params.steps} steps analysed")

        return follow(trial, params, timeout=timeout, poll_interval=poll_interval, on_poll=show)


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
    try:
        Path(output).write_bytes(content)
    except OSError as error:
        raise PoorinitError(f"{output}: cannot write the plot ({error.strerror or error})") from None
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
@quiet_option
@config_option
@setting_options("jobs", "scheduler")
@debug_option
def scan(roots: tuple[str, ...], fmt: str | None, output: str | None, quiet: bool, config_file: str | None,
         debug: bool, **values: Any) -> int:
    """Find every trial below each ROOT and analyse them in parallel, worst first.

    Exit 1 if any trial fired, else 2 if any could not be analysed, else 0.
    """
    import os

    from .format import step_file_name
    from .report import Format, scan_formatter
    from .report.jsonl import line as jsonl_line
    from .scan import discover, scan_dask, scan_exit_code, scan_local, worst_first

    settings = _settings(config_file, {"fmt": fmt, **values})
    params = settings.rule_params()
    chosen = Format(settings.value("format"))
    found = discover(roots)
    for directory, problem in found.unreadable:
        click.echo(f"poorinit: warning: {directory}: cannot be listed ({problem}); skipped", err=True)
    if not found.trials:
        raise PoorinitError(
            f"no trials found below {', '.join(roots)} (a trial is a directory of step files named like "
            f"{step_file_name(0)})"
        )

    streaming = chosen is Format.JSONL
    stream = Report(output)
    console = _stderr_console()
    show_progress = console.is_terminal and not quiet and not (streaming and output is None and sys.stdout.isatty())
    try:
        with _progress(console, len(found.trials), show_progress) as advance:

            def on_result(result: Any) -> None:
                if streaming:
                    stream.write(jsonl_line(result))
                advance()

            scheduler = settings.value("scheduler")
            if scheduler is not None:
                results = scan_dask(found.trials, params, scheduler, on_result)
            else:
                jobs = settings.value("jobs") or os.cpu_count() or 1
                results = scan_local(found.trials, params, jobs, on_result)
    finally:
        stream.close()
    results = worst_first(results)
    if streaming:
        if output is not None:
            _terminal(quiet, lambda: _table().scan_renderable(results), lambda: _table().scan_line(results))
    else:
        _deliver(chosen, output, quiet, lambda: scan_formatter(chosen)(results),
                 lambda: _table().scan_renderable(results), lambda: _table().scan_line(results))
    return scan_exit_code(results)


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
@setting_options(*RUN_OPTIONS)
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a [tool.poorinit] table.")
def config_command(config_file: str | None, as_json: bool, fmt: str | None, **values: Any) -> int:
    """Print the effective settings and where each came from.

    Precedence: command line, then environment (POORINIT_<OPTION>), then the
    config file (--config FILE, else [tool.poorinit] of the nearest
    pyproject.toml), then the built-in defaults.
    """
    from .config import render_json, render_toml

    settings = _settings(config_file, {"fmt": fmt, **values})
    click.echo(render_json(settings) if as_json else render_toml(settings), nl=False)
    return EXIT_PASSED


@cli.command()
@click.argument("trial", type=click.Path(path_type=str, readable=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@debug_option
def inspect(trial: str, fmt: str, debug: bool) -> int:
    """List the steps, modes, workers and tensors of TRIAL."""
    from .inspect import describe, render_json, render_table

    description = describe(trial)
    if fmt == "json":
        click.echo(render_json(description), nl=False)
    else:
        render_table(description)
    return EXIT_PASSED


@cli.command()
def checks() -> int:
    """List the criteria the rule applies (built-in and plugins)."""
    from .checks.registry import load_checks

    for check in load_checks():
        click.echo(f"{check.name}\t{check.title}\t{check.description}")
    return EXIT_PASSED


def _show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    click.echo(f"poorinit: warning: {message}", err=True)


def _error(message: str) -> None:
    click.echo(f"poorinit: error: {' '.join(message.split())}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    warnings.showwarning = _show_warning
    try:
        code = cli.main(args=args, prog_name="poorinit", standalone_mode=False)
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
        return EXIT_ERROR
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
        _error(f"internal error: {type(error).__name__}: {error} (rerun with --debug and report it)")
        return EXIT_ERROR
    return code if isinstance(code, int) else EXIT_PASSED
