"""Recording a trial from a PyTorch training loop (the optional extra ``torch``).

This package is the only part of poorinit that imports torch; the rest of
poorinit (reading, judging, reporting) never needs it. Its modules:

- ``modules``: which modules are activations, which module runs, which produced a tensor;
- ``functional``: functional activations (``F.relu``) seen through a TorchFunctionMode;
- ``recorder``: ``Recorder``, the step logic and the writing;
- ``preflight``: ``preflight``, the rule on one in-memory pass at the current initialisation;
- ``autohook``: ``hook(model, path)``, recording without changing the loop;
- ``hf`` and ``lightning``: callbacks for Hugging Face's Trainer and for
  Lightning (imported only when used: they import those libraries).

See docs/recording.md.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401  (imported to fail here, once, with a useful message)
except ImportError as error:
    # One error naming the fix, instead of a traceback ending deep inside a submodule.
    raise ImportError(
        f"poorinit.torch needs PyTorch, which cannot be imported ({error}); "
        "install it with: pip install 'poorinit[torch]'",
        name="torch",
    ) from None

from .autohook import Hook, hook
from .modules import ACTIVATION_KINDS, activation_kind

# The function, not the module: ``poorinit.torch.preflight(model, batch, loss_fn)``
# (``poorinit.torch.preflight.summary`` stays importable from the module).
from .preflight import preflight  # noqa: E402
from .recorder import Recorder, RecordingError, RecordingWarning

__all__ = ["ACTIVATION_KINDS", "Hook", "Recorder", "RecordingError", "RecordingWarning", "activation_kind", "hook",
           "preflight"]
