"""Output formats: one module per format, one registration line each.

Every formatter takes a verdict and returns text, except ``table``, which
draws on a rich console. ``FORMATTERS`` maps each :class:`Format` member to its
renderer; a test proves no member is left without one.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..rule import Verdict


class Format(str, Enum):
    TABLE = "table"
    JSON = "json"


def formatter(fmt: Format) -> Callable[[Verdict], str]:
    """The text renderer of a format (imported only when used)."""
    if fmt is Format.TABLE:
        from .table import render_text

        return render_text
    if fmt is Format.JSON:
        from .json import render

        return render
    raise ValueError(f"no formatter for {fmt}")
