"""Atomic file output: a file either appears complete under its name or not at all.

Used for every artifact a person or the node reads back (model sidecars, engines, ONNX/pt2 models,
checkpoints, dataset list files), so an interrupted run never leaves a half-written file that
looks complete.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _usual_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success make it `path`.

    The temporary file is fsynced, given the usual file mode (mkstemp creates 0600, which would
    hide a sidecar or engine from a node running as another user) and renamed over `path`; the
    folder is fsynced so the rename survives a crash. On any error the temporary file is removed.
    `suffix` matters to writers that pick a format by extension (e.g. ".onnx").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as stream:
            os.fsync(stream.fileno())
        os.chmod(tmp, _usual_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: str | os.PathLike, data) -> Path:
    """Write a bytes-like object to `path` atomically; returns the path."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(memoryview(data))
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text to `path` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))
