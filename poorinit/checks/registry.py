"""Finding checks: the ``poorinit.checks`` entry-point group.

The built-in criteria are registered there too (pyproject.toml), so the path a
third-party check takes is the path every analysis takes. A plugin that fails
to load is reported as a warning and skipped rather than taking the gate down;
the built-ins are always present, even from a source tree that was never
installed.
"""

from __future__ import annotations

import functools
import warnings
from importlib.metadata import entry_points

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
    for entry in entry_points(group=GROUP):
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
