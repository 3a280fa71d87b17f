"""Trials in object stores (``s3://``, ``gs://``, ``az://``, any fsspec URL), read through fsspec.

Extra ``remote`` (fsspec, s3fs); ``gs://`` needs gcsfs and ``az://`` adlfs.
Credentials come the usual way for each store (for S3: the environment,
``~/.aws`` profiles, instance roles; ``AWS_ENDPOINT_URL_S3`` for another
endpoint) and are never printed: errors name the URL and the store's reason.

What is read: one listing of the trial's prefix, then only the step files the
rule analyses. An HDF5 step file is opened as a file object (h5py reads it by
byte ranges, so only the metadata and the selected datasets travel); an smdebug
event file is read one tensor record at a time, at the byte range its index
gives. Paths keep their URL spelling in every message and report.

S3 requests are bounded (:data:`CONNECT_TIMEOUT`, :data:`READ_TIMEOUT`,
:data:`MAX_ATTEMPTS`), so an unreachable endpoint ends in exit 2 within about
a minute instead of hanging a CI job (docs/scale.md).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import threading
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from types import TracebackType
from typing import IO, Any

from . import format as fmt
from .errors import PoorinitError, StepFileError, TrialError
from .trial import H5_ERRORS, REPLACED_WHILE_READ, ListedSteps, StepReader, _Budget, _open_problem, _replaced

EXTRA_HINT = "pip install 'poorinit[remote]'"

# Per request to S3: seconds to connect, seconds to wait for bytes, attempts in all
# (botocore's "standard" retry mode, with backoff). Worst case for an endpoint
# that accepts no connection: MAX_ATTEMPTS x CONNECT_TIMEOUT plus backoff.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30
MAX_ATTEMPTS = 3


# Bytes fetched per request when h5py reads a step file (None: the store's default, 50 MiB for s3fs, so
# most step files travel in one request). Each request after the first asks for the object as first
# seen (If-Match its ETag), so a step file replaced while it is read is refused, never read half old,
# half new (RemoteStepReader).
BLOCK_SIZE: int | None = None


class RemoteError(PoorinitError):
    """An object store refused or failed a request."""


def _storage_options(protocol: str) -> dict[str, Any]:
    if protocol in ("s3", "s3a"):
        return {
            "config_kwargs": {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT,
                              "retries": {"max_attempts": MAX_ATTEMPTS, "mode": "standard"}},
        }
    return {}


def _reason(error: BaseException) -> str:
    """A store's error on one line, without a traceback's worth of chained text."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# Packages whose exceptions mean "the store or the network failed" (each store has its own).
_STORE_PACKAGES = {"botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec", "gcsfs", "adlfs", "google", "azure",
                   "requests", "urllib3"}


def _from_store(error: BaseException) -> bool:
    return isinstance(error, OSError) or type(error).__module__.split(".")[0] in _STORE_PACKAGES


def fsspec_store(url: str) -> tuple[FsspecStore, str]:
    """The store for ``url`` and the path within it."""
    try:
        import fsspec
    except ImportError:
        raise PoorinitError(f"{url}: reading an object store needs fsspec: {EXTRA_HINT}") from None
    protocol = url.split("://", 1)[0]
    try:
        fs, path = fsspec.core.url_to_fs(url, **_storage_options(protocol))
    except ImportError as error:
        # fsspec names the package that implements the protocol (s3fs, gcsfs, adlfs, ...).
        raise PoorinitError(f"{url}: reading {protocol}:// needs a package fsspec names: {_reason(error)} "
                            f"(for s3://: {EXTRA_HINT})") from None
    except ValueError as error:
        raise PoorinitError(f"{url}: fsspec knows no such protocol ({_reason(error)})") from None
    return FsspecStore(fs, protocol, url, path), path.rstrip("/")


class _RemotePath(str):
    """A URL with the one Path attribute readers use (``name``), printed unmangled."""

    @property
    def name(self) -> str:
        return self.rsplit("/", 1)[-1]


class FsspecStore:
    """A :class:`poorinit.store.Store` over an fsspec file system."""

    def __init__(self, fs: Any, protocol: str, url: str, root: str) -> None:
        self.fs = fs
        self.protocol = protocol
        # The URL as typed, for messages; paths below it are spelled protocol://path.
        self.url = url
        self.root = root

    # Spelling -----------------------------------------------------------------
    def join(self, base: str, *parts: str) -> str:
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])

    def name(self, path: str) -> str:
        return PurePosixPath(path.rstrip("/")).name

    def location(self, path: str) -> _RemotePath:
        return _RemotePath(f"{self.protocol}://{path.lstrip('/')}")

    # Requests -------------------------------------------------------------------
    def _call(self, what: str, path: str, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return request(*args, **kwargs)
        except FileNotFoundError:
            raise
        except PermissionError as error:
            raise RemoteError(f"{self.location(path)}: permission denied by the store ({_reason(error)}); "
                              "check the credentials and the bucket's policy") from None
        except Exception as error:
            if not _from_store(error):
                raise  # a bug of ours or of a library: the CLI reports it as an internal error
            raise RemoteError(f"{self.location(path)}: cannot {what} ({type(error).__name__}: {_reason(error)}); "
                              "check the URL, the endpoint and the network") from None

    def is_dir(self, path: str) -> bool:
        try:
            return bool(self._call("list it", path, self.fs.isdir, path))
        except FileNotFoundError:
            return False

    def exists(self, path: str) -> bool:
        try:
            return bool(self._call("look it up", path, self.fs.exists, path))
        except FileNotFoundError:
            return False

    def find(self, path: str) -> list[str]:
        try:
            return sorted(self._call("list it", path, self.fs.find, path))
        except FileNotFoundError:
            return []

    def read(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        end = None if length is None else start + length
        return bytes(self._call("read it", path, self.fs.cat_file, path, start=start, end=end))

    def read_many(self, paths: Sequence[str]) -> dict[str, bytes]:
        if not paths:
            return {}
        # One call: async stores (s3fs, gcsfs) fetch the files concurrently.
        found = self._call("read it", paths[0], self.fs.cat, list(paths), on_error="raise")
        return {path: found[path] for path in paths}

    def open(self, path: str) -> IO[bytes]:
        options = {} if BLOCK_SIZE is None else {"block_size": BLOCK_SIZE}
        return self._call("open it", path, self.fs.open, path, "rb", **options)  # type: ignore[no-any-return]

    def list(self, path: str) -> list[tuple[str, bool]]:
        entries = self._call("list it", path, self.fs.ls, path, detail=True)
        found = []
        for entry in entries:
            name = self.name(entry["name"])
            if name and entry["name"].rstrip("/") != path.rstrip("/"):
                found.append((name, entry.get("type") == "directory"))
        return sorted(found)


def missing_trial(store: Any, path: str, looked_for: Sequence[str]) -> PoorinitError:
    """What a URL that no format recognised is: a missing bucket, a missing key, or something else."""
    where = store.location(path)
    bucket = path.split("/", 1)[0]
    if not store.exists(bucket):
        return TrialError(where, f"no such bucket ({bucket}), or these credentials may not see it; check the URL")
    try:
        entries = store.list(path)
    except FileNotFoundError:
        entries = []
    if not entries:
        return TrialError(where, f"nothing is stored under this key in bucket {bucket}; check the URL")
    return TrialError(where, f"holds neither {' nor '.join(looked_for)}; point poorinit at the prefix the writer wrote")


_collector_lock = threading.Lock()
_collector_pauses = 0
_collector_was_enabled = False


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The garbage collector off while an h5py read waits on the store (nested, across threads).

    h5py holds its global lock while it reads through a file object, and the
    read waits on fsspec's I/O thread. Should that thread (or any other) run a
    collection that frees an h5py object caught in a reference cycle, the
    object's deallocation waits for h5py's lock: the read never completes
    and the process hangs. Found as a hang of tests/test_remote.py, where
    the server's own thread collected; the I/O thread can do the same.
    """
    global _collector_pauses, _collector_was_enabled
    with _collector_lock:
        _collector_pauses += 1
        if _collector_pauses == 1:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if _collector_pauses == 0 and _collector_was_enabled:
                gc.enable()


class _Uncollected:
    """A store's file object as h5py reads it: every read with the collector paused (see above)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def readinto(self, buffer: Any) -> int:
        with _collector_paused():
            return int(self._handle.readinto(buffer))

    def read(self, size: int = -1) -> bytes:
        with _collector_paused():
            return bytes(self._handle.read(size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


class RemoteStepReader(StepReader):
    """A poorinit step file in an object store, read by h5py through a file object.

    Everything but the opening is :class:`~poorinit.trial.StepReader`'s:
    the same validation, link refusal and error translation.
    """

    def __init__(self, step_file: fmt.StepFile, store: FsspecStore, path: str) -> None:
        import h5py

        # The attributes StepReader.__init__ sets (tests/test_remote.py runs this class on every suite).
        self.step_file = step_file
        self._datasets: dict[str, Any] = {}
        self._names: list[tuple[str, tuple[str, ...]]] | None = None
        self._fd = -1  # no local file descriptor: StepReader.close() then closes only the HDF5 file
        self._store, self._path = store, path
        try:
            self._handle = store.open(path)
        except FileNotFoundError:
            raise StepFileError(step_file.path, "vanished after the trial was listed; rerun once nothing deletes "
                                                "step files") from None
        self.budget = _Budget(step_file.path, int(getattr(self._handle, "size", 0) or 0))
        try:
            self._file = h5py.File(_Uncollected(self._handle), "r", rdcc_nbytes=0)
        except H5_ERRORS as error:
            self._handle.close()
            if _replaced(error) or _replaced(error.__context__ or error):
                raise StepFileError(step_file.path, REPLACED_WHILE_READ) from error
            raise StepFileError(step_file.path, _open_problem(error)) from error
        try:
            self._validate()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._handle.close()

    def check_unchanged(self) -> None:
        """Refuse a step file replaced in the store while it was read.

        An object store replaces an object whole, but a step file is read in
        several requests. With s3fs each request after the first asks for the
        object first seen (If-Match its ETag), so a replacement fails the read
        itself (poorinit.trial._translated). Other stores are asked once more,
        here, for the object's version (ETag, generation, size and time) and
        compared with what was opened.
        """
        if "IfMatch" in (getattr(self._handle, "read_kw", None) or {}):
            return  # every request was conditional: what was read is one version
        opened = _version(getattr(self._handle, "details", None) or {})
        if not opened:
            return  # the store tells no version: nothing to compare
        fs = self._store.fs
        with contextlib.suppress(Exception):
            fs.invalidate_cache(self._path)
        try:
            now = _version(self._store._call("look it up", self._path, fs.info, self._path))
        except FileNotFoundError:
            now = {}
        if now != opened:
            raise StepFileError(self.step_file.path, REPLACED_WHILE_READ)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# What names a version of an object, in the listings of the stores fsspec reads.
_VERSION_KEYS = ("ETag", "etag", "VersionId", "generation", "md5Hash", "size", "LastModified", "last_modified",
                 "mtime", "updated")


def _version(details: dict[str, Any]) -> dict[str, str]:
    return {key: str(details[key]) for key in _VERSION_KEYS if details.get(key) is not None}


class RemoteTrial(ListedSteps):
    """A poorinit trial (HDF5 step files) under a prefix of an object store."""

    format_name = "poorinit"

    def __init__(self, store: FsspecStore, root: str) -> None:
        self.store = store
        self.root = root
        self.path = store.location(root)
        super().__init__([name for name, _ in store.list(root)])
        seen: dict[tuple[int, str, int], str] = {}
        for step, mode, worker, name in self._keys:
            other = seen.setdefault((step, mode, worker), name)
            if other != name:
                raise StepFileError(
                    store.location(store.join(root, name)),
                    f"duplicates {other} (step {step}, mode {mode}, worker {worker}); keep one and move the other "
                    "out of the trial",
                )

    def steps(self, mode: str = "train") -> list[int]:
        return sorted({step for step, m, _, _ in self._keys if m == mode})

    def step_files(self, step: int, mode: str = "train") -> list[fmt.StepFile]:
        return [
            fmt.StepFile(s, m, worker, self.store.location(self.store.join(self.root, name)))  # type: ignore[arg-type]
            for s, m, worker, name in self._keys
            if s == step and m == mode
        ]

    def open(self, step_file: fmt.StepFile) -> RemoteStepReader:
        url = str(step_file.path)
        return RemoteStepReader(step_file, self.store, url.split("://", 1)[1])


@functools.lru_cache(maxsize=1)
def _trial_markers() -> tuple[str, ...]:
    from .smdebug.layout import EVENTS_DIR, INDEX_DIR

    return (EVENTS_DIR, INDEX_DIR)


def discover(root_url: str) -> list[str]:
    """Every trial at or below ``root_url``, from one recursive listing, as URLs.

    A prefix holding step files is a poorinit trial; one holding
    ``events/<digits>/`` or ``index/<digits>/`` is a SageMaker Debugger trial.
    Nothing below a trial is searched further.
    """
    store, root = fsspec_store(root_url)
    try:
        files = store.find(root)
    except FileNotFoundError:
        files = []
    if not files:
        raise PoorinitError(f"{root_url}: no such bucket or prefix (nothing is stored under it); check the URL")
    trials: set[str] = set()
    for path in files:
        parts = PurePosixPath(path).parts
        if fmt.STEP_FILE_RE.match(parts[-1]):
            trials.add(str(PurePosixPath(*parts[:-1])))
            continue
        for depth in range(len(parts) - 2):
            if parts[depth] in _trial_markers() and parts[depth + 1].isdigit():
                trials.add(str(PurePosixPath(*parts[:depth])))
                break
    # A trial inside another trial belongs to it.
    outer = sorted(trials)
    kept = [t for t in outer if not any(t != o and t.startswith(o + "/") for o in outer)]
    return [store.location(t) for t in kept]
