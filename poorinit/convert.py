"""``poorinit convert``: a SageMaker Debugger trial rewritten as a poorinit trial, for archiving.

Every floating-point tensor of every step, mode and worker is written with
:class:`~poorinit.writer.TrialWriter` (so the result carries the writer's
checksums), under its smdebug name and in the poorinit collections its smdebug
collections map to (docs/sagemaker.md). What smdebug knew and poorinit's
format has no field for is kept as attributes: each tensor's smdebug
collections (``smdebug_collections``) and each step's global step and worker
name (``smdebug_global_step``, ``smdebug_worker``). Tensors that are not
floating point cannot be stored in the format; they are counted and named in
a warning, never dropped in silence.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PoorinitError
from .sources import open_trial

FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")


@dataclass
class Conversion:
    """What was written."""

    source: str
    target: str
    step_files: int = 0
    tensors: int = 0
    modes: list[str] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # tensor name -> dtype

    def line(self) -> str:
        skipped = f"; left out {len(self.skipped)} tensors that are not floating point" if self.skipped else ""
        return (f"converted {self.step_files} step files ({self.tensors} tensors; modes {', '.join(self.modes)}; "
                f"workers {', '.join(map(str, self.workers))}) of {self.source} into {self.target}{skipped}")


def convert(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Conversion:
    """Write the smdebug trial at ``source`` as a poorinit trial in the new directory ``target``."""
    from .writer import TrialWriter

    trial = open_trial(source)
    if trial.format_name != "smdebug":
        raise PoorinitError(f"{trial.path}: is a poorinit trial already; convert reads SageMaker Debugger trials")
    out = Path(target)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PoorinitError(f"{out}: exists and is not an empty directory; convert into a new directory")
    done = Conversion(str(trial.path), str(out), modes=list(trial.modes), workers=list(trial.workers))
    worker_name = getattr(trial, "worker_name", str)
    writers: dict[tuple[str, int], TrialWriter] = {}
    for mode in trial.modes:
        for step in trial.steps(mode):
            for step_file in trial.step_files(step, mode):
                key = (mode, step_file.worker)
                writer = writers.get(key)
                if writer is None:
                    writer = writers[key] = TrialWriter(out, mode=mode, worker=step_file.worker)
                with trial.open(step_file) as reader:
                    tensors, attrs = {}, {}
                    mapped_collections = dict(reader.tensor_names())
                    for info in reader.infos():
                        if info.dtype not in FLOAT_DTYPES:
                            done.skipped.setdefault(info.name, info.dtype)
                            continue
                        values = reader.tensor(info.name).values  # type: ignore[attr-defined]
                        tensors[info.name] = (values, mapped_collections[info.name])
                        if info.collections:
                            attrs[info.name] = {"smdebug_collections": ",".join(info.collections)}
                    root: dict[str, str | int] = {"smdebug_worker": worker_name(step_file.worker)}
                    global_step = getattr(reader, "global_step", None)
                    if global_step is not None:
                        root["smdebug_global_step"] = global_step
                    writer.write_step(step, tensors=tensors, attrs=attrs, root_attrs=root)
                done.step_files += 1
                done.tensors += len(tensors)
    if trial.finished:  # training_job_end.ts: every worker is done
        for writer in writers.values():
            writer.close()
    if done.skipped:
        shown = ", ".join(f"{name} ({dtype})" for name, dtype in list(done.skipped.items())[:5])
        warnings.warn(f"{trial.path}: left out tensors that are not floating point (the format holds float16/32/64 "
                      f"only): {shown}", stacklevel=2)
    return done
