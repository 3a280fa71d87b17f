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
from .errors import PoorinitError

EXIT_PASSED, EXIT_FIRED, EXIT_ERROR = 0, 1, 2


def rule_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The rule's parameters as options, SageMaker's names in kebab case."""
    options = [
        click.option("--activation-inputs-regex", default=".*relu_input", show_default=True, metavar="REGEX[,REGEX]",
                     help="Activation inputs to compare; regexes matched from the start of the name."),
        click.option("--threshold", default="10.0", show_default=True, metavar="RATIO",
                     help="Fire when largest/smallest layer variance exceeds this at a step."),
        click.option("--distribution-range", default="0.001", show_default=True, metavar="WIDTH",
                     help="Fire when the 5th-95th percentile spread of the gradients is below this."),
        click.option("--patience", default="5", show_default=True, metavar="N",
                     help="Steps per window when judging whether the loss decreases."),
        click.option("--steps", default="10", show_default=True, metavar="N",
                     help="How many of the first steps to analyse."),
        click.option("--gradient-regex", default=None, metavar="REGEX[,REGEX]",
                     help="Gradients to judge (default: the 'gradients' collection)."),
        click.option("--loss-regex", default=None, metavar="REGEX[,REGEX]",
                     help="Losses to judge (default: the 'losses' collection)."),
        click.option("--mode", default="train", show_default=True, type=click.Choice(["train", "eval", "predict"]),
                     help="Which steps to analyse."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


debug_option = click.option("--debug", is_flag=True, help="Show a traceback on errors.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="poorinit", message="%(prog)s %(version)s")
def cli() -> None:
    """Tell from the first training steps whether a network was poorly initialised.

    Exit codes: 0 the rule did not fire, 1 it fired, 2 the input could not be
    analysed or the command was misused.
    """


@cli.command()
@click.argument("trial", type=click.Path(path_type=str))
@rule_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Report format (json: docs/json.md).")
@debug_option
def analyze(trial: str, fmt: str, debug: bool, **params: Any) -> int:
    """Apply the PoorWeightInitialization rule to TRIAL (a directory of step files)."""
    from .analysis import analyze as run
    from .report import Format, formatter

    verdict = run(trial, **params)
    if fmt == Format.TABLE.value:
        from rich.console import Console

        from .report.table import renderable

        Console(highlight=False).print(renderable(verdict))
    else:
        click.echo(formatter(Format(fmt))(verdict), nl=False)
    return verdict.exit_code


@cli.command()
@click.argument("trial", type=click.Path(path_type=str))
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
