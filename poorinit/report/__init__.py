"""Output formats: one module per format, one registration line each.

Every format module has ``render(verdict) -> str`` for ``analyze`` and
``render_scan(results) -> str`` for ``scan`` (results worst first). ``table``
also draws on a rich console for the terminal. :data:`MODULES` maps each
:class:`Format` member to its module; a test proves no member is left without
both renderers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from enum import Enum
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..rule import Verdict
    from ..scan import TrialResult


class Format(str, Enum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"
    JUNIT = "junit"
    GITHUB = "github"
    MARKDOWN = "markdown"


MODULES: dict[Format, str] = {
    Format.TABLE: "table",
    Format.JSON: "json",
    Format.JSONL: "jsonl",
    Format.JUNIT: "junit",
    Format.GITHUB: "github",
    Format.MARKDOWN: "markdown",
}


def _module(fmt: Format) -> ModuleType:
    """The format's module, imported only when used."""
    if fmt not in MODULES:
        raise ValueError(f"no formatter for {fmt}")
    return importlib.import_module(f".{MODULES[fmt]}", __name__)


def formatter(fmt: Format) -> Callable[[Verdict], str]:
    """The text renderer of one verdict (``analyze``)."""
    return _module(fmt).render  # type: ignore[no-any-return]


def scan_formatter(fmt: Format) -> Callable[[Sequence[TrialResult]], str]:
    """The text renderer of a scan's results, worst first (``scan``)."""
    return _module(fmt).render_scan  # type: ignore[no-any-return]
