"""What two of the recorder's choices save a training loop (issue 13's sixth round), side by side.

    python bench/recording_parts.py            # 7 alternated runs of 10 steps per side
    python bench/recording_parts.py --smoke    # tiny: checks the script still works

For bench/recording.py's transformer and MLP (batch 64, one torch thread), a
recorded step as shipped against the same with one choice undone:

* each step file flushed to disk (``fsync``) before its rename, as the
  recorder did until this round (docs/recording.md, "Durability");
* the attention logits formed on the training thread, at the call, instead of
  on the writer thread from copies of their operands (attention.DeferredLogits).

Each figure is the median over alternated runs of the extra time per step
against an unrecorded step, in ms and as a share of the unrecorded step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from recording import MODELS, train  # bench/recording.py, beside this file

from poorinit.torch import Recorder, attention, functional


def flushing(model: torch.nn.Module, path: Path, steps: int) -> Recorder:
    rec = Recorder(model, path, steps=steps)
    rec.writer.fsync = True  # every file flushed to disk before its rename, on the writer thread
    return rec


@contextmanager
def logits_at_the_call() -> Iterator[None]:
    """Attention logits computed at the call, on the training thread (the recorder before this round)."""
    deferred = functional.attention_logits

    def at_once(func: object, args: tuple[object, ...], kwargs: dict[str, object]) -> object:
        found = deferred(func, args, kwargs)
        return found() if isinstance(found, attention.DeferredLogits) else found

    functional.attention_logits = at_once  # type: ignore[assignment]
    try:
        yield
    finally:
        functional.attention_logits = deferred


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="What two recorder choices save (issue 13).")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one run each")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    batch, steps, runs = (8, 2, 1) if args.smoke else (64, 10, args.runs)
    torch.set_num_threads(1)
    print("| model | unrecorded step | recorded, as shipped | recorded, each file flushed "
          "(fsync) | recorded, logits formed at the call |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="poorinit-parts-") as directory:
        root, counter = Path(directory), 0
        for label in ("2-layer transformer (seq 16, width 64)", "MLP 3x256"):
            make, shape = MODELS[label]
            torch.manual_seed(0)
            model = make()
            train(model, shape, batch, 1, None)  # warm-up
            sides: dict[str, list[float]] = {"plain": [], "shipped": [], "flushed": [], "at the call": []}
            for _ in range(runs):  # alternated
                counter += 1
                sides["plain"].append(train(model, shape, batch, steps, None))
                sides["shipped"].append(train(model, shape, batch, steps,
                                              partial(Recorder, model, root / f"s{counter}", steps=steps)))
                sides["flushed"].append(train(model, shape, batch, steps,
                                              partial(flushing, model, root / f"f{counter}", steps)))
                with logits_at_the_call():
                    sides["at the call"].append(train(model, shape, batch, steps,
                                                      partial(Recorder, model, root / f"c{counter}", steps=steps)))
            base = statistics.median(sides["plain"]) / steps
            cells = []
            for side in ("shipped", "flushed", "at the call"):
                extra = statistics.median(sides[side]) / steps - base
                cells.append(f"+{extra * 1e3:.2f} ms ({extra / base:.0%})")
            print(f"| {label} | unrecorded {base * 1e3:.2f} ms | " + " | ".join(cells) + " |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
