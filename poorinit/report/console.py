"""The rich consoles of the command line: width and colour decided in one place.

A terminal gets rich's usual behaviour: its own width (or ``COLUMNS``), long
cells folded to fit. Anything else (a pipe, a file, a CI log) has no width to
respect, so nothing is wrapped or cut there: a CI log that folds
``gradient/net.0.bias`` into ``gradient/net.0.bi`` / ``as`` cannot be grepped,
and ``COLUMNS`` (which rich would otherwise apply even to a pipe) is ignored.
The width of such output is the natural width of what is printed.

Colour (``--color``): ``always`` and ``never`` win over the environment;
``auto`` colours a terminal, unless ``NO_COLOR`` is set, and colours any stream
when ``FORCE_COLOR`` is set (``NO_COLOR`` wins when both are). Empty values
count as unset, as https://no-color.org says.

rich is imported inside the functions: ``poorinit --version`` must not pay for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO, Any

COLOR_CHOICES = ("auto", "always", "never")

# Wider than any line poorinit prints; a table never expands to it (tables are
# not ``expand=True``), and the text lines are not padded to it.
UNBOUNDED = 1_000_000


def wants_color(color: str, stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Whether to colour ``stream`` under ``--color`` and the environment."""
    environ = os.environ if environ is None else environ
    if color == "always":
        return True
    if color == "never":
        return False
    if environ.get("NO_COLOR", ""):
        return False
    if environ.get("FORCE_COLOR", ""):
        return True
    return _isatty(stream)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def plain_stdout(color: str) -> bool:
    """Whether stdout gets plain text: neither a terminal nor coloured."""
    return not _isatty(sys.stdout) and not wants_color(color, sys.stdout)


def make_console(*, stderr: bool = False, color: str = "auto", file: IO[str] | None = None) -> Any:
    """A rich Console on stdout (or stderr, or ``file``) following the rules above."""
    from rich.console import Console

    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    terminal = _isatty(stream)
    colored = wants_color(color, stream)
    options: dict[str, Any] = {"highlight": False, "soft_wrap": False}
    if file is not None:
        options["file"] = file
    else:
        options["stderr"] = stderr
    if colored:
        # force_terminal makes rich emit colour codes into a pipe; the width
        # below still treats the pipe as a pipe.
        options["force_terminal"] = True
        options["no_color"] = False
        if not terminal:
            options["color_system"] = "standard"
    else:
        options["no_color"] = True
        options["force_terminal"] = terminal
        options["color_system"] = None
    if not terminal:
        options["width"] = UNBOUNDED
        # Not a terminal: no cursor movements, live displays or animations.
        options["force_interactive"] = False
    # rich reads NO_COLOR / FORCE_COLOR / COLUMNS itself; our decision above is
    # final, so hide those from it.
    options["_environ"] = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")
                           or (terminal and k == "COLUMNS")}
    return Console(**options)


def print_renderable(console: Any, renderable: Any) -> None:
    """Print ``renderable``; on a non-terminal without trailing padding."""
    console.print(renderable)
