"""A Hugging Face ``transformers`` ``TrainerCallback`` that records a trial (the extra ``hf``).

>>> trainer = Trainer(model, args, train_dataset=data,                 # doctest: +SKIP
...                   callbacks=[PoorinitCallback("runs/trial")])

A step opens at ``on_step_begin`` (the weights the step's forwards use) and
closes at ``on_pre_optimizer_step`` (the gradients complete, before the
update), so gradient accumulation is one step. The loss is the ``loss`` of the
model's output, which Trainer's default ``compute_loss`` makes the model
compute; its mean over the micro-batches of a step is written. Evaluation runs
under ``torch.no_grad()`` and is not recorded. See docs/recording.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as error:
    raise ImportError(
        f"poorinit.torch.hf needs Hugging Face transformers, which cannot be imported ({error}); "
        "install it with: pip install 'poorinit[hf]'",
        name="transformers",
    ) from None

from .autohook import Hook

__all__ = ["PoorinitCallback"]


class PoorinitCallback(TrainerCallback):  # type: ignore[misc]
    """Records the first ``steps`` optimiser steps of ``Trainer.train()`` into ``path``.

    In distributed training each process writes its own worker's files
    (``worker`` = the process index). Other ``options`` are the Recorder's.
    """

    def __init__(self, path: str | os.PathLike[str], *, steps: int | Iterable[int] = 10, **options: Any) -> None:
        self.path = path
        self.steps = steps
        self.options = options
        self.hook: Hook | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None:
            raise ValueError("the Trainer gave the callback no model")
        options = {"worker": getattr(args, "process_index", 0), **self.options}
        self.hook = Hook(model, self.path, count="callback", steps=self.steps, **options)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.hook is not None:
            self.hook.begin_step()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.hook is not None:
            self.hook.end_step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.hook is not None:
            self.hook.close()
