"""Where a trial's files are read from: the local file system or an object store.

A :class:`Store` is the few operations a trial reader needs (list below a
prefix, read a whole small file, read a byte range of a large one), so that
one reader serves a directory on disk and a prefix in S3 alike. The local
store is plain ``os``; :mod:`poorinit.remote` adds one over fsspec.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Protocol


class Store(Protocol):
    """The file operations of a trial reader, on paths spelled as the store spells them."""

    def join(self, base: str, *parts: str) -> str: ...

    def name(self, path: str) -> str: ...

    def is_dir(self, path: str) -> bool: ...

    def exists(self, path: str) -> bool: ...

    def find(self, path: str) -> list[str]:
        """Every file below ``path`` (recursively), sorted; [] when there is no such directory."""
        ...

    def list(self, path: str) -> list[tuple[str, bool]]:
        """(name, is a directory) of each entry directly in ``path``."""
        ...

    def read(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes from ``start`` (all to the end when None); fewer only at the end of the file."""
        ...

    def read_many(self, paths: Sequence[str]) -> dict[str, bytes]:
        """Whole small files, fetched together where the store can (one round trip per batch)."""
        ...

    def open(self, path: str) -> IO[bytes]:
        """A seekable binary file object (for h5py)."""
        ...

    def location(self, path: str) -> str | Path:
        """How messages and reports name ``path``: a Path here, the URL unmangled in an object store."""
        ...


class LocalStore:
    """The local file system."""

    def join(self, base: str, *parts: str) -> str:
        return os.path.join(base, *parts)

    def name(self, path: str) -> str:
        return os.path.basename(path.rstrip(os.sep))

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def find(self, path: str) -> list[str]:
        found: list[str] = []
        for directory, _, files in os.walk(path):
            found.extend(os.path.join(directory, name) for name in files)
        return sorted(found)

    def list(self, path: str) -> list[tuple[str, bool]]:
        with os.scandir(path) as entries:
            return sorted((entry.name, entry.is_dir()) for entry in entries)

    def read(self, path: str, start: int = 0, length: int | None = None) -> bytes:
        with open(path, "rb") as handle:
            handle.seek(start)
            return handle.read() if length is None else handle.read(length)

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        return {path: self.read(path) for path in paths}

    def open(self, path: str) -> IO[bytes]:
        return open(path, "rb")  # noqa: SIM115 (the caller closes it)

    def location(self, path: str) -> str | Path:
        return Path(path)
