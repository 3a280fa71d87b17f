"""Reading a SageMaker Debugger trial behind poorinit's reader interface.

Listing reads the small JSON index files (one per step and worker): they say
each step's mode and mode step, and where each tensor's record sits in the
step's event file. A step reader names its tensors from the index and reads a
tensor by fetching that one record (a byte range), verifying its CRCs and
decoding its ``Event``; a step without an index (a job that stopped before
writing it) is read whole instead. Nothing but the event files of the
analysed steps, and in them only the records of the selected tensors, is read.

Steps are numbered as smdebug numbers them within a mode (``mode_step``),
which is what SageMaker's rules see. A hook that was never told a mode writes
mode GLOBAL: such steps count as ``train`` when the trial has no TRAIN steps
(a plain training loop), and are left out otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .. import format as fmt
from ..errors import PoorinitError, StepFileError, TensorError, TrialError
from ..store import Store
from ..trial import BLOCK_ELEMENTS, TensorInfo
from . import layout

EXTRA_HINT = "pip install 'poorinit[sagemaker]'"

# smdebug's ModeKeys, by name: what its index files and event metadata hold.
SMDEBUG_MODES = {"TRAIN": "train", "EVAL": "eval", "PREDICT": "predict", "GLOBAL": "global"}
MODE_NUMBERS = {"1": "TRAIN", "2": "EVAL", "3": "PREDICT", "4": "GLOBAL"}

# smdebug's collections that mean what one of poorinit's means. Any other
# collection (all, default, inputs, outputs, biases, ...) marks nothing for
# the rule, so its tensors are selected by name alone, as in SageMaker.
COLLECTION_MAP = {"gradients": fmt.GRADIENTS, "weights": fmt.WEIGHTS, "losses": fmt.LOSSES}
ACTIVATION_COLLECTION_RE = re.compile(r"relu|activation", re.IGNORECASE)


def poorinit_collections(smdebug_collections: Sequence[str]) -> tuple[str, ...]:
    """The poorinit collections a tensor of these smdebug collections belongs to."""
    found: list[str] = []
    for name in smdebug_collections:
        mapped = COLLECTION_MAP.get(name)
        if mapped is None and ACTIVATION_COLLECTION_RE.search(name):
            mapped = fmt.ACTIVATION_INPUTS
        if mapped is not None and mapped not in found:
            found.append(mapped)
    return tuple(found)


def require_extra(path: object) -> None:
    """Refuse in one line, naming the extra, when protobuf or crc32c is missing."""
    missing = []
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        missing.append("protobuf")
    try:
        import crc32c  # noqa: F401
    except ImportError:
        missing.append("crc32c")
    if missing:
        raise PoorinitError(
            f"{path}: is a SageMaker Debugger trial; reading it needs {' and '.join(missing)}: {EXTRA_HINT}"
        )


@dataclass
class _Entry:
    """One (global step, worker): its event file and, when written, its index."""

    global_step: int
    worker_name: str
    event_file: str | None = None
    index_file: str | None = None
    index: dict[str, Any] | None = None
    missing_event_file: str | None = None
    mode: str = ""
    mode_step: int = -1


@dataclass(frozen=True)
class _Located:
    """Where a tensor's record is in its event file."""

    name: str
    start: int
    length: int


class EventTensor:
    """One tensor decoded from its record: small enough to hold in memory."""

    def __init__(self, name: str, values: np.ndarray, worker: int, source: str,
                 attrs: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.worker = worker
        self.source = source
        self.values = values
        self.shape: tuple[int, ...] = tuple(int(n) for n in values.shape)
        self.attrs: Mapping[str, Any] = dict(attrs or {})

    @property
    def size(self) -> int:
        return int(self.values.size)

    def blocks(self) -> Iterator[np.ndarray]:
        flat = self.values.reshape(-1)
        for start in range(0, flat.size, BLOCK_ELEMENTS):
            yield flat[start : start + BLOCK_ELEMENTS]


_FLOAT_TYPES = {"DT_HALF": np.float16, "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64}


def dtype_name(number: int) -> str:
    """numpy's spelling of a DataType (float32, int64, ...), as poorinit inspect shows HDF5 dtypes."""
    from .proto import DATA_TYPES

    names = {n: k for k, n in DATA_TYPES.items()}
    name = names.get(number)
    if name is None:
        return f"data type {number}"
    spelled = {"DT_HALF": "float16", "DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_STRING": "string"}
    return spelled.get(name, name.removeprefix("DT_").lower())


def _short(shape: tuple[int, ...], found: int, needed: int, unit: str) -> str:
    return f"claims shape {shape} but its record holds {found} of its {needed} {unit}: the event file is damaged"


def tensor_values(proto: Any, source: str, name: str) -> np.ndarray:
    """A TensorProto's values as a float array of its shape, refusing what the rule cannot judge."""
    from .proto import DATA_TYPES

    kind = {number: key for key, number in DATA_TYPES.items()}.get(proto.dtype, f"data type {proto.dtype}")
    shape = tuple(int(dim.size) for dim in proto.tensor_shape.dim)
    size = int(np.prod(shape, dtype=np.int64))
    if kind == "DT_BFLOAT16":
        dtype: Any = np.uint16
    else:
        dtype = _FLOAT_TYPES.get(kind)
    if dtype is None:
        readable = dtype_name(proto.dtype)
        raise TensorError(
            source, name, f"dtype {readable} is not float16/32/64; poorinit judges floating-point tensors only: "
            "leave it out of what the rule selects"
        )
    content = proto.tensor_content
    if content:
        itemsize = np.dtype(dtype).itemsize
        if len(content) != size * itemsize:
            raise TensorError(source, name, _short(shape, len(content), size * itemsize, "bytes"))
        # smdebug writes ndarray.tostring(): native order, little-endian on every machine it runs on.
        values = np.frombuffer(content, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    else:
        listed: Any
        if kind == "DT_HALF":
            listed = np.asarray(proto.half_val, dtype=np.uint16).view(np.float16)
        elif kind == "DT_BFLOAT16":
            listed = np.asarray(proto.half_val, dtype=np.uint16)
        elif kind == "DT_DOUBLE":
            listed = np.asarray(proto.double_val, dtype=np.float64)
        else:
            listed = np.asarray(proto.float_val, dtype=np.float32)
        if listed.size == 1 and size > 1:  # TensorFlow's convention: one value fills the tensor
            listed = np.full(size, listed[0], dtype=listed.dtype)
        if listed.size != size:
            raise TensorError(source, name, _short(shape, listed.size, size, "values"))
        values = listed
    if kind == "DT_BFLOAT16":
        # bfloat16 is the top half of a float32: widening is exact.
        values = (values.astype(np.uint32) << 16).view(np.float32)
    return values.reshape(shape)


class SmdebugStepReader:
    """The tensors of one worker at one step, read record by record."""

    def __init__(self, trial: SmdebugTrial, step_file: fmt.StepFile, entry: _Entry) -> None:
        self.step_file = step_file
        self.attrs: Mapping[str, Any] = {}
        self._trial = trial
        self._store = trial.store
        self._entry = entry
        self._source = str(step_file.path)
        if entry.event_file is None:
            raise StepFileError(
                step_file.path, f"is missing: the index {trial.display(entry.index_file or '')} lists it, but the "
                "event file was never written or was deleted; copy the whole trial again"
            )
        self._located: dict[str, _Located] | None = None
        self._decoded: dict[str, Any] = {}  # name -> TensorProto, for steps read whole

    @property
    def global_step(self) -> int:
        """smdebug's step number across modes (the one in the file names)."""
        return self._entry.global_step

    # Listing -----------------------------------------------------------
    def _locations(self) -> dict[str, _Located]:
        if self._located is None:
            index = self._entry.index
            if index is not None:
                located = {}
                for item in index.get("tensor_payload", []):
                    try:
                        found = _Located(str(item["tensorname"]), int(item["start_idx"]), int(item["length"]))
                    except (KeyError, TypeError, ValueError):
                        raise StepFileError(
                            self._trial.location(self._entry.index_file or ""),
                            _not_an_index("a tensor_payload entry with tensorname, start_idx and length"),
                        ) from None
                    located[found.name] = found
                self._located = located
            else:
                self._located = self._read_whole()
        return self._located

    def _read_whole(self) -> dict[str, _Located]:
        from .records import RecordError, iter_records

        data = self._trial.read_event_file(self._entry)
        located = {}
        try:
            for offset, length, payload in iter_records(data):
                for value in _event(payload, self._source).summary.value:
                    if value.WhichOneof("value") == "tensor":
                        located[value.tag] = _Located(value.tag, offset, length)
                        self._decoded[value.tag] = value.tensor
        except RecordError as error:
            raise StepFileError(self.step_file.path, _damaged(error.problem)) from None
        return located

    def tensor_names(self) -> list[tuple[str, tuple[str, ...]]]:
        collections = self._trial.collections_of
        return [(name, poorinit_collections(collections.get(name, ()))) for name in self._locations()]

    def infos(self) -> list[TensorInfo]:
        infos = []
        for name in self._locations():
            proto = self._proto(name)
            shape = tuple(int(dim.size) for dim in proto.tensor_shape.dim)
            infos.append(TensorInfo(name, shape, dtype_name(proto.dtype), self._trial.collections_of.get(name, ())))
        return infos

    # Reading -----------------------------------------------------------
    def _proto(self, name: str) -> Any:
        from .records import RecordError, read_record

        proto = self._decoded.get(name)
        if proto is not None:
            return proto
        where = self._locations().get(name)
        if where is None:
            raise KeyError(name)
        data = self._trial.read_range(self._entry, where.start, where.length)
        try:
            payload, _ = read_record(data)
        except RecordError as error:
            problem = error.problem.replace("at byte 0", f"at byte {where.start}")
            if len(data) < where.length:
                problem = (f"truncated record at byte {where.start}: the file ends {len(data)} bytes into the "
                           f"{where.length} bytes the index gives it")
            raise TensorError(self._source, name, _damaged(problem)) from None
        for value in _event(payload, self._source, name).summary.value:
            if value.tag == name and value.WhichOneof("value") == "tensor":
                self._decoded[name] = value.tensor
                return value.tensor
        raise TensorError(
            self._source, name, f"is not in the record at byte {where.start} where the index puts it: the index and "
            "the event file disagree; copy the whole trial again"
        )

    def tensor(self, name: str) -> EventTensor:
        values = tensor_values(self._proto(name), self._source, name)
        return EventTensor(name, values, self.step_file.worker, self._source)

    def close(self) -> None:
        self._decoded.clear()

    def __enter__(self) -> SmdebugStepReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _not_an_index(expected: str) -> str:
    return (f"is not a SageMaker Debugger index (expected {expected}): it is damaged or truncated; restore it "
            "from the job's output")


def _damaged(problem: str) -> str:
    return f"is damaged: {problem}; restore the event file or rerun the job"


def _event(payload: memoryview, source: str, tensor: str | None = None) -> Any:
    from google.protobuf.message import DecodeError

    from .proto import Event

    event = Event()
    try:
        event.ParseFromString(bytes(payload))
    except DecodeError as error:
        problem = f"holds a record that is not a TensorBoard Event ({error}): the event file is damaged"
        if tensor is not None:
            raise TensorError(source, tensor, problem) from None
        raise StepFileError(source, problem) from None
    return event


@dataclass
class _Listing:
    entries: list[_Entry] = field(default_factory=list)
    by_key: dict[tuple[str, int, int], _Entry] = field(default_factory=dict)


class SmdebugTrial:
    """A SageMaker Debugger trial: the reader interface of :mod:`poorinit.sources`."""

    format_name = "smdebug"

    def __init__(self, store: Store, root: str) -> None:
        self.store = store
        self.root = root
        self.path = store.location(root)
        require_extra(self.path)
        self._names = dict(store.list(root))
        entries = self._list_entries()
        self.worker_names: tuple[str, ...] = tuple(_worker_order({e.worker_name for e in entries}))
        self._worker_numbers = {name: number for number, name in enumerate(self.worker_names)}
        numbered = _numbered_workers(self.worker_names)
        if numbered is not None:
            self._worker_numbers = numbered
        self._read_indexes(entries)
        self._listing = self._arrange(entries)
        self._collections: dict[str, tuple[str, ...]] | None = None
        self._collection_names: tuple[str, ...] = ()

    # What the interface promises --------------------------------------------
    @property
    def modes(self) -> tuple[str, ...]:
        present = {key[0] for key in self._listing.by_key}
        return tuple(m for m in fmt.MODES if m in present)

    @property
    def workers(self) -> tuple[int, ...]:
        return tuple(sorted(self._worker_numbers.values()))

    def mode_workers(self, mode: str) -> tuple[int, ...]:
        """The workers with at least one event file of ``mode``."""
        return tuple(sorted({worker for m, _, worker in self._listing.by_key if m == mode}))

    @property
    def finished(self) -> bool:
        """smdebug writes training_job_end.ts when the job ends."""
        return layout.END_OF_JOB in self._names

    def steps(self, mode: str = "train") -> list[int]:
        return sorted({step for m, step, _ in self._listing.by_key if m == mode})

    def step_files(self, step: int, mode: str = "train") -> list[fmt.StepFile]:
        found = []
        for (m, s, worker), entry in sorted(self._listing.by_key.items()):
            if m == mode and s == step:
                found.append(fmt.StepFile(step, mode, worker, self._event_location(entry)))  # type: ignore[arg-type]
        return found

    def open(self, step_file: fmt.StepFile) -> SmdebugStepReader:
        entry = self._listing.by_key[(step_file.mode, step_file.step, step_file.worker)]
        return SmdebugStepReader(self, step_file, entry)

    # Collections ----------------------------------------------------------
    @property
    def collection_names(self) -> tuple[str, ...]:
        """Every collection the hook wrote, sorted."""
        self.collections_of  # noqa: B018 (reads the collections files once)
        return self._collection_names

    @property
    def collections_of(self) -> dict[str, tuple[str, ...]]:
        """smdebug collection names of each tensor, from the hook's collections files."""
        if self._collections is None:
            self._collections = self._read_collections()
        return self._collections

    def _read_collections(self) -> dict[str, tuple[str, ...]]:
        directory = self.store.join(self.root, layout.COLLECTIONS_DIR)
        files = [p for p in self.store.find(directory) if layout.COLLECTIONS_FILE_RE.match(self.store.name(p))]
        by_tensor: dict[str, list[str]] = {}
        names: set[str] = set()
        for path, data in self.store.read_many(files).items():
            try:
                document = json.loads(data)
                collections = document["collections"]
                items = collections.items() if isinstance(collections, dict) else ()
            except (ValueError, KeyError, TypeError, AttributeError):
                raise TrialError(
                    self.location(path), "is not a SageMaker Debugger collections file (JSON with \"collections\"); "
                    "restore it from the job's output"
                ) from None
            for collection, body in items:
                names.add(str(collection))
                tensors = body.get("tensor_names", []) if isinstance(body, dict) else []
                for tensor in tensors:
                    listed = by_tensor.setdefault(str(tensor), [])
                    if collection not in listed:
                        listed.append(str(collection))
        self._collection_names = tuple(sorted(names))
        return {tensor: tuple(sorted(found)) for tensor, found in by_tensor.items()}

    # Listing ----------------------------------------------------------------
    def location(self, path: str) -> str | Path:
        return self.store.location(path)

    def display(self, path: str) -> str:
        return str(self.store.location(path))

    def _event_location(self, entry: _Entry) -> Any:
        return self.store.location(entry.event_file or entry.missing_event_file or entry.index_file or self.root)

    def _list_entries(self) -> list[_Entry]:
        entries: dict[tuple[int, str], _Entry] = {}
        for path in self.store.find(self.store.join(self.root, layout.EVENTS_DIR)):
            match = layout.EVENT_FILE_RE.match(self.store.name(path))
            if match:
                key = (int(match["step"]), match["worker"])
                entries.setdefault(key, _Entry(*key)).event_file = path
        for path in self.store.find(self.store.join(self.root, layout.INDEX_DIR)):
            match = layout.INDEX_FILE_RE.match(self.store.name(path))
            if match:
                key = (int(match["step"]), match["worker"])
                entries.setdefault(key, _Entry(*key)).index_file = path
        if not entries:
            raise TrialError(
                self.path, "is a SageMaker Debugger trial without steps (no event or index files under events/ or "
                "index/); point poorinit at a trial the hook has written steps to"
            )
        return [entries[key] for key in sorted(entries)]

    def _read_indexes(self, entries: list[_Entry]) -> None:
        indexed = [e for e in entries if e.index_file is not None]
        contents = self.store.read_many([e.index_file for e in indexed if e.index_file])
        for entry in indexed:
            assert entry.index_file is not None
            where = self.location(entry.index_file)
            try:
                document = json.loads(contents[entry.index_file])
                meta = document["meta"]
                mode = str(meta["mode"]).split(".")[-1].upper()
                mode_step = int(meta["mode_step"])
            except (ValueError, KeyError, TypeError):
                raise StepFileError(where, _not_an_index("JSON with meta.mode and meta.mode_step")) from None
            if mode not in SMDEBUG_MODES:
                raise StepFileError(where, f"names an unknown mode {mode!r} (smdebug writes TRAIN, EVAL, PREDICT, "
                                           "GLOBAL)")
            entry.index, entry.mode, entry.mode_step = document, SMDEBUG_MODES[mode], mode_step
            if entry.event_file is None:
                # Named for the error when the step is opened: where the index says the event file is.
                expected = meta.get("event_file_name") if isinstance(meta, dict) else None
                entry.missing_event_file = self.store.join(self.root, str(expected)) if expected else None
        for entry in entries:
            if entry.index is None:
                # No index (the job stopped before writing it): the event file itself says the mode.
                entry.mode, entry.mode_step = self._mode_from_events(entry)

    def _mode_from_events(self, entry: _Entry) -> tuple[str, int]:
        from .records import RecordError, iter_records

        data = self.read_event_file(entry)
        source = self.display(entry.event_file or "")
        try:
            for _, _, payload in iter_records(data):
                event = _event(payload, source)
                for value in event.summary.value:
                    mode, mode_step = "GLOBAL", int(event.step)
                    for plugin in value.metadata.plugin_data:
                        if plugin.plugin_name == "mode":
                            mode = MODE_NUMBERS.get(plugin.content.strip(), mode)
                        elif plugin.plugin_name == "mode_step":
                            mode_step = int(plugin.content)
                    return SMDEBUG_MODES[mode], mode_step
        except RecordError as error:
            raise StepFileError(self.location(entry.event_file or ""), _damaged(error.problem)) from None
        except ValueError:
            pass
        raise StepFileError(self.location(entry.event_file or ""),
                            "holds no tensors and has no index file: its step cannot be placed; remove it")

    def _arrange(self, entries: list[_Entry]) -> _Listing:
        listing = _Listing(entries)
        has_train = any(e.mode == "train" for e in entries)
        for entry in entries:
            mode = entry.mode
            if mode == "global":
                if has_train:
                    continue
                mode = "train"
            worker = self._worker_numbers[entry.worker_name]
            key = (mode, entry.mode_step, worker)
            previous = listing.by_key.get(key)
            if previous is not None:
                raise StepFileError(
                    self._event_location(entry),
                    f"duplicates step {entry.mode_step} of mode {mode} of worker {entry.worker_name} "
                    f"(also global step {previous.global_step}); keep one run per trial directory",
                )
            listing.by_key[key] = entry
        return listing

    # Reading ----------------------------------------------------------------
    def read_event_file(self, entry: _Entry) -> bytes:
        return self._read(entry, 0, None)

    def read_range(self, entry: _Entry, start: int, length: int) -> bytes:
        return self._read(entry, start, length)

    def _read(self, entry: _Entry, start: int, length: int | None) -> bytes:
        path = entry.event_file or ""
        try:
            return self.store.read(path, start, length)
        except FileNotFoundError:
            raise StepFileError(self.location(path), "vanished after the trial was listed; rerun once nothing "
                                                     "deletes step files") from None
        except PermissionError:
            raise StepFileError(self.location(path), "permission denied; give this user read permission on the "
                                                     "file") from None
        except OSError as error:
            raise StepFileError(self.location(path), f"cannot be read ({error.strerror or error}); check the path") \
                from None

    def worker_name(self, worker: int) -> str:
        for name, number in self._worker_numbers.items():
            if number == worker:
                return name
        return str(worker)


def _worker_order(names: set[str]) -> list[str]:
    def key(name: str) -> tuple[int, str]:
        digits = re.findall(r"\d+", name)
        return (int(digits[-1]) if digits else -1, name)

    return sorted(names, key=key)


def _numbered_workers(names: Sequence[str]) -> dict[str, int] | None:
    """worker_0, worker_1, ... keep their numbers; any other naming is numbered in sorted order."""
    numbers = {}
    for name in names:
        match = re.fullmatch(r"worker_(\d+)", name)
        if match is None:
            return None
        numbers[name] = int(match[1])
    return numbers
