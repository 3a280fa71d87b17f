"""The names of a SageMaker Debugger trial, without protobuf (sniffing must stay cheap).

smdebug (``smdebug/core/locations.py``, ``smdebug/core/hook.py``) lays a trial out as::

    events/000000000012/000000000012_worker_0.tfevents   tensors of global step 12, one file per worker
    index/000000000/000000000012_worker_0.json           where each tensor sits in that file, and the
                                                          step's mode and mode step
    collections/000000000/worker_0_collections.json      the hook's collections and their tensors
    training_job_end.ts                                  written when the job ended

Step numbers in the names are global steps (counted across modes); the index
says which mode a step belongs to and its number within that mode.
"""

from __future__ import annotations

import re

from ..store import Store

EVENTS_DIR = "events"
INDEX_DIR = "index"
COLLECTIONS_DIR = "collections"
END_OF_JOB = "training_job_end.ts"

EVENT_FILE_RE = re.compile(r"^(?P<step>\d+)_(?P<worker>.+)\.tfevents$")
INDEX_FILE_RE = re.compile(r"^(?P<step>\d+)_(?P<worker>.+)\.json$")
COLLECTIONS_FILE_RE = re.compile(r"^(?P<worker>.*?)_?collections\.json$")


def looks_like_smdebug(store: Store, path: str) -> bool:
    """An ``events/`` or ``index/`` directory holding step directories: names only, nothing opened."""
    try:
        entries = dict(store.list(path))
    except OSError:
        return False
    for directory in (EVENTS_DIR, INDEX_DIR):
        if entries.get(directory):
            try:
                if any(is_dir and name.isdigit() for name, is_dir in store.list(store.join(path, directory))):
                    return True
            except OSError:
                continue
    return False
