"""poorinit: tell from the first training steps whether a network was poorly initialised.

An open implementation of Amazon SageMaker Debugger's PoorWeightInitialization
rule over trials of HDF5 step files (docs/format.md, docs/rule.md) and SageMaker
Debugger trials (docs/sagemaker.md), on disk or in object stores (docs/scale.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

__all__ = [
    "__version__",
    "analyze",
    "evaluate",
    "Analysis",
    "ArrayTensor",
    "Check",
    "CriterionResult",
    "NothingToAnalyseError",
    "ParameterError",
    "PoorinitError",
    "RuleParams",
    "Selector",
    "Status",
    "open_trial",
    "StepFileError",
    "TensorError",
    "Trial",
    "TrialError",
    "TrialWriter",
    "Verdict",
]

# Imports are lazy so that `poorinit --version` never loads numpy or h5py.
_LOCATIONS = {
    "analyze": "analysis",
    "evaluate": "analysis",
    "Analysis": "analysis",
    "ArrayTensor": "trial",
    "Trial": "trial",
    "open_trial": "sources",
    "TrialWriter": "writer",
    "Check": "checks.base",
    "CriterionResult": "checks.base",
    "Selector": "checks.base",
    "Status": "checks.base",
    "RuleParams": "params",
    "Verdict": "rule",
    "PoorinitError": "errors",
    "ParameterError": "errors",
    "NothingToAnalyseError": "errors",
    "StepFileError": "errors",
    "TensorError": "errors",
    "TrialError": "errors",
}


def __dir__() -> list[str]:
    """The public API (what ``__all__`` names), although most of it is imported only on first use."""
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        import importlib

        value = getattr(importlib.import_module(f".{_LOCATIONS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .analysis import Analysis, analyze, evaluate
    from .checks.base import Check, CriterionResult, Selector, Status
    from .errors import (
        NothingToAnalyseError,
        ParameterError,
        PoorinitError,
        StepFileError,
        TensorError,
        TrialError,
    )
    from .params import RuleParams
    from .rule import Verdict
    from .sources import open_trial
    from .trial import ArrayTensor, Trial
    from .writer import TrialWriter
