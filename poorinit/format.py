"""The on-disk trial format, version 1 (specified in docs/format.md).

Kept free of h5py so that listing a trial (names only) costs no import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from .records import record

FORMAT_VERSION = 1
FORMAT_ATTR = "poorinit_format"
TENSOR_GROUP = "tensors"
COLLECTIONS_ATTR = "collections"
# A writer that closes cleanly leaves FINISHED_<worker>; a plain FINISHED marks
# the whole trial (written by hand, or by a launcher that knows every worker).
FINISHED_MARKER = "FINISHED"
WORKER_FINISHED_RE = re.compile(r"^FINISHED_(?P<worker>\d{1,9})$")
# The per-file attributes every step file carries; the reader checks that the
# last three agree with the file name.
REQUIRED_ATTRS = (FORMAT_ATTR, "step", "mode", "worker")
# Optional root attribute: how many workers (ranks 0 to N-1) write the trial, so that a
# worker that has written nothing yet is still waited for (docs/format.md).
WORKERS_ATTR = "workers"
MAX_DECLARED_WORKERS = 65_536

# What the writer asks of HDF5 so that every byte a reader needs is covered by
# a checksum: "v110" as the lower library bound gives a version-3 superblock,
# version-2 object headers and fixed-array chunk indexes, all checksummed
# (readable by HDF5 1.10 and later); tensors up to COMPACT_BYTES live in their
# object header (compact layout), covered by its checksum; larger ones are
# chunked with the fletcher32 filter; strings are fixed-length, so they sit in
# the checksummed header rather than in the unchecked global heap.
HDF5_LIBVER = "v110"
COMPACT_BYTES = 8192

# Every HDF5 file starts with these 8 bytes (at offset 0, or 512, 1024, ...
# after a user block).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

MODES = ("train", "eval", "predict")

ACTIVATION_INPUTS = "activation_inputs"
GRADIENTS = "gradients"
WEIGHTS = "weights"
LOSSES = "losses"
COLLECTIONS = (ACTIVATION_INPUTS, GRADIENTS, WEIGHTS, LOSSES)

# <step, 12 digits>_<mode>_<worker>.h5 ; the writer zero-pads the step so that a
# directory listing sorts in step order, the reader accepts any digit count.
STEP_FILE_RE = re.compile(r"^(?P<step>\d{1,18})_(?P<mode>train|eval|predict)_(?P<worker>\d{1,9})\.h5$")


@record(order=True)
class StepFile:
    """One step file, known from its name alone (nothing has been opened)."""

    step: int
    mode: str
    worker: int
    path: Path


def step_file_name(step: int, mode: str = "train", worker: int = 0) -> str:
    """The file name the format gives to (step, mode, worker)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if step < 0 or worker < 0:
        raise ValueError("step and worker must be >= 0")
    return f"{step:012d}_{mode}_{worker}.h5"


# What follows a step file name's first "_": the mode, the worker and the suffix.
_STEP_FILE_TAIL_RE = re.compile(r"^(train|eval|predict)_(\d{1,9})\.h5$")


def step_file_keys(names: Iterable[str]) -> list[tuple[int, str, int, str]]:
    r"""``(step, mode, worker, name)`` of each name that STEP_FILE_RE matches, read as it reads them.

    A listing of 10,000 step files holds a handful of distinct tails
    (``train_0.h5``): each is matched once and the step number checked with
    ``str.isdecimal`` (the characters ``\d`` matches), about a third of a
    regex match and three group lookups per name (``analyze --follow`` lists
    the directory at every poll).
    """
    tails: dict[str, tuple[str, int] | None] = {}
    keys = []
    for name in names:
        step, _, tail = name.partition("_")
        try:
            parsed = tails[tail]
        except KeyError:
            found = _STEP_FILE_TAIL_RE.match(tail)
            parsed = tails[tail] = None if found is None else (found[1], int(found[2]))
        if parsed is not None and 0 < len(step) <= 18 and step.isdecimal():
            keys.append((int(step), parsed[0], parsed[1], name))
    return keys


def chunk_axis(shape: tuple[int, ...], chunks: tuple[int, ...]) -> int | None:
    """The axis chunks cut, when each chunk is a run of the C-order array (extent 1 on
    the axes before it, the full extent after it, as TrialWriter cuts them); else None.

    The writers lay chunks out by it and the readers read them raw by it, so both
    agree on which chunks are runs and in which order their bytes come."""
    axis = next((a for a, extent in enumerate(chunks) if extent != 1), len(shape) - 1)
    if any(chunks[a] != shape[a] for a in range(axis + 1, len(shape))):
        return None
    return axis


def parse_step_file_name(path: Path) -> StepFile | None:
    """The StepFile a name denotes, or None for any other file (ignored by readers)."""
    match = STEP_FILE_RE.match(path.name)
    if match is None:
        return None
    return StepFile(int(match["step"]), match["mode"], int(match["worker"]), path)


def worker_finished_marker(worker: int) -> str:
    """The file a worker's writer leaves when it closes cleanly."""
    return f"{FINISHED_MARKER}_{worker}"


def is_finished(names: Iterable[str], workers: Iterable[int]) -> bool:
    """Whether a directory holding ``names`` marks ``workers`` (all of a trial's) finished.

    Data-parallel workers close at different times: the trial is finished when
    every worker that wrote a step file has left its marker, not when the first
    one has.
    """
    names = set(names)
    if FINISHED_MARKER in names:
        return True
    done = {int(m["worker"]) for m in map(WORKER_FINISHED_RE.match, names) if m}
    workers = set(workers)
    return bool(workers) and workers <= done
