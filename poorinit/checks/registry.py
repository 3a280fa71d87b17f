"""Finding checks: the ``poorinit.checks`` entry-point group.

The built-in criteria are registered there too (pyproject.toml), so the path a
third-party check takes is the path every analysis takes. A plugin that fails
to load is reported as a warning and skipped rather than taking the gate down;
the built-ins are always present, even from a source tree that was never
installed.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Iterable
from typing import Any

from .activations import ActivationVarianceCheck
from .base import Check
from .gradients import GradientSpreadCheck
from .initial import InitialLossCheck
from .loss import LossDecreaseCheck
from .saturation import SaturationCheck

GROUP = "poorinit.checks"
BUILTIN: tuple[type[Check], ...] = (
    ActivationVarianceCheck, GradientSpreadCheck, LossDecreaseCheck, SaturationCheck, InitialLossCheck
)


class PluginWarning(UserWarning):
    """A third-party check could not be loaded and was skipped."""


@functools.lru_cache(maxsize=1)
def load_checks() -> tuple[type[Check], ...]:
    """Built-ins first, in the rule's order, then plugins by name.

    Cached: reading every installed distribution's entry points costs several
    milliseconds, and a scan analyses thousands of trials in one process.
    """
    found: dict[str, type[Check]] = {check.name: check for check in BUILTIN}
    plugins: dict[str, type[Check]] = {}
    for entry in _plugin_entry_points():
        try:
            loaded = entry.load()
        except Exception as error:  # a broken plugin must not take the gate down
            warnings.warn(f"check plugin {entry.name!r} ({entry.value}) failed to load: {error}", PluginWarning,
                          stacklevel=2)
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, Check)):
            warnings.warn(f"check plugin {entry.name!r} ({entry.value}) is not a poorinit Check subclass",
                          PluginWarning, stacklevel=2)
            continue
        if loaded.name not in found:
            plugins[loaded.name] = loaded
    return (*found.values(), *(plugins[name] for name in sorted(plugins)))


def _plugin_entry_points() -> Iterable[Any]:
    """The entry points of GROUP, read with importlib.metadata only when some
    distribution on sys.path declares one that is not a built-in.

    importlib.metadata reads every installed distribution's metadata (and
    imports the email parser to do it): some 60 ms at every start, more than
    judging a small trial. A distribution declares its entry points in one
    small text file; reading those files for the group's section costs a few
    milliseconds, and only when a plugin is found is the full, standard
    lookup made. Entries on sys.path that are not directories (zip files,
    eggs) cannot be sniffed this way, so they send it to the full lookup too.
    """
    header = f"[{GROUP}]"
    builtin = {f"{check.__module__}:{check.__qualname__}" for check in BUILTIN}
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as listing:
                names = [item.name for item in listing if item.name.endswith((".dist-info", ".egg-info"))]
        except NotADirectoryError:
            return _all_entry_points()
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(entry or ".", name, "entry_points.txt"), encoding="utf-8") as handle:
                    text = handle.read()
            except OSError:
                continue
            if header in text and _section_values(text, header) - builtin:
                return _all_entry_points()
    return ()


def _section_values(text: str, header: str) -> set[str]:
    """The values (``module:attr``) of one section of an entry_points.txt."""
    values: set[str] = set()
    inside = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            inside = line == header
        elif inside and "=" in line and not line.startswith(("#", ";")):
            values.add(line.split("=", 1)[1].split("[", 1)[0].strip().replace(" ", ""))
    return values


def _all_entry_points() -> Iterable[Any]:
    from importlib.metadata import entry_points

    return entry_points(group=GROUP)
