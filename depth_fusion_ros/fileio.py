"""Atomic file output: a file either appears complete under its name or not at all.

Used for every artifact a person or the node reads back (model sidecars, engines, ONNX/pt2 models,
checkpoints, dataset list files), so an interrupted run never leaves a half-written file that
looks complete.

Leftovers: a writer killed with SIGKILL (or by the OOM killer) cannot remove its temporary file.
Temporaries are therefore named `.{name}.{pid}.XXXXXXXX{suffix}` beside the target, and the next
write of the same target removes those whose writer process is gone (its PID is not alive, or it
is this process's own PID from an earlier run but not one of this process's writes in progress:
a restarted container often reuses the PID). A concurrent live writer's temporary is kept. The
same rule cleans the folders of other tools (`remove_stale_temporaries`, e.g. ms2_to_bag). A
writer in another PID namespace (another container sharing the folder) looks dead from here.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_IN_PROGRESS: set[str] = set()  # realpaths of this process's temporaries being written now
_MKSTEMP_RANDOM = "[a-z0-9_]{8}"  # tempfile's random part: 8 of [a-z0-9_]


def _usual_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists (also one of another user, or a zombie)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def _writer_is_gone(pid: int, path: Path) -> bool:
    if pid == os.getpid():
        return os.path.realpath(path) not in _IN_PROGRESS  # our PID but not our write: stale
    return not pid_alive(pid)


def remove_stale_temporaries(folder: str | os.PathLike, pattern: re.Pattern[str]) -> list[Path]:
    """Remove the entries of `folder` whose whole name matches `pattern` and whose writer is gone.

    `pattern` must have a group named `pid` (the writer's process ID in the name). Files are
    unlinked, folders removed with their contents. Returns what was removed.
    """
    folder = Path(folder)
    if "pid" not in pattern.groupindex:
        raise ValueError(f"pattern {pattern.pattern!r} has no (?P<pid>...) group")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in folder.iterdir():
            match = pattern.fullmatch(entry.name)
            if match is None or not _writer_is_gone(int(match["pid"]), entry):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def temporary_pattern(path: str | os.PathLike, suffix: str = ".tmp") -> re.Pattern[str]:
    """The exact name pattern of `atomic_output(path, suffix)`'s temporaries (group `pid`)."""
    name = Path(path).name
    return re.compile(rf"\.{re.escape(name)}\.(?P<pid>\d+)\.{_MKSTEMP_RANDOM}{re.escape(suffix)}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success make it `path`.

    The temporary file (`.{name}.{pid}.XXXXXXXX{suffix}`) is fsynced, given the usual file mode
    (mkstemp creates 0600, which would hide a sidecar or engine from a node running as another
    user) and renamed over `path`; the folder is fsynced so the rename survives a crash. On any
    error the temporary file is removed; temporaries of dead writers of the same target are
    removed first (see the module docstring). `suffix` matters to writers that pick a format by
    extension (e.g. ".onnx").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, temporary_pattern(path, suffix))
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix,
                                        dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    _IN_PROGRESS.add(os.path.realpath(tmp))
    try:
        yield tmp
        with open(tmp, "rb") as stream:
            os.fsync(stream.fileno())
        os.chmod(tmp, _usual_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _IN_PROGRESS.discard(os.path.realpath(tmp))
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
