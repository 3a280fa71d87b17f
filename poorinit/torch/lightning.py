"""A PyTorch Lightning ``Callback`` that records a trial.

>>> trainer = lightning.Trainer(callbacks=[PoorinitLightningCallback("runs/trial")])   # doctest: +SKIP

A step opens at ``on_train_batch_start`` and closes at
``on_before_optimizer_step``; the loss is the one Lightning hands to
``on_before_backward`` (the mean over the batches of an accumulation window).
Hooks go on the ``LightningModule`` and its submodules, so everything its
``training_step`` runs through them is seen. See docs/recording.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

try:
    from lightning.pytorch import Callback
except ImportError as error:
    raise ImportError(
        f"poorinit.torch.lightning needs PyTorch Lightning, which cannot be imported ({error}); "
        "install it with: pip install lightning",
        name="lightning",
    ) from None

from .autohook import Hook

__all__ = ["PoorinitLightningCallback"]


class PoorinitLightningCallback(Callback):  # type: ignore[misc]
    """Records the first ``steps`` optimiser steps of ``trainer.fit()`` into ``path``."""

    def __init__(self, path: str | os.PathLike[str], *, steps: int | Iterable[int] = 10, **options: Any) -> None:
        self.path = path
        self.steps = steps
        self.options = options
        self.hook: Hook | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        options = {"worker": getattr(trainer, "global_rank", 0), **self.options}
        self.hook = Hook(pl_module, self.path, count="callback", steps=self.steps, **options)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.hook is not None:
            self.hook.begin_step()

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        if self.hook is not None:
            self.hook.add_loss(loss)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.hook is not None:
            self.hook.end_step()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.hook is not None:
            self.hook.close()
