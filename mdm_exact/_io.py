"""Files and streams of the command line: paths named by arguments are checked before any work,
files are replaced atomically, and ``--json`` output is converted value by value.

Every check raises a one-line ``MdmExactError`` naming the option and the offending path.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ._utils import json_ready
from .errors import ArgumentError, MissingFileError

_UMASK = os.umask(0o022)  # the process umask: reading it means setting it, so set it back
os.umask(_UMASK)


def print_json(data, stream=None) -> None:
    """Write ``data`` as strict JSON (``json_ready`` converts values: non-finite floats become
    the strings ``"nan"``, ``"inf"``, ``"-inf"``); the one ``--json`` writer of every verb."""
    text = json.dumps(json_ready(data), indent=2, allow_nan=False)
    (sys.stdout if stream is None else stream).write(text + "\n")


def _named(option: str, path) -> Path:
    if path is None or str(path) == "":
        raise ArgumentError(f"{option} must name a file, got {'' if path is None else path!r}")
    return Path(path)


def input_file(option: str, path) -> Path:
    """``path`` as a Path, refusing an empty name, a directory, a missing or unreadable file."""
    p = _named(option, path)
    if p.is_dir():
        raise ArgumentError(f"{option} {str(p)!r} is a directory, not a file")
    if not p.exists():
        raise MissingFileError(f"{option}: no file {str(p)!r}")
    if not os.access(p, os.R_OK):
        raise ArgumentError(f"{option} {str(p)!r} is not readable")
    return p


def _writable_parent(option: str, p: Path) -> None:
    parent = p.parent
    if not parent.is_dir():
        raise MissingFileError(f"no directory {str(parent)!r} for {option} {str(p)!r}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArgumentError(f"{option} {str(p)!r}: directory {str(parent)!r} is not writable")


def output_file(option: str, path, *, overwrite: bool = False) -> Path:
    """``path`` as a Path to write a new file at: refuses an empty name, a directory, a missing
    or read-only parent directory and, unless ``overwrite``, an existing file."""
    p = _named(option, path)
    if p.is_dir():
        raise ArgumentError(f"{option} {str(p)!r} is a directory; give a file name")
    if p.exists() and not overwrite:
        raise ArgumentError(f"{option} {str(p)!r} already exists (pass --overwrite to replace "
                            "it)")
    _writable_parent(option, p)
    return p


def output_dir(option: str, path) -> Path:
    """``path`` as a directory to create or reuse: refuses an empty name, an existing file, a
    missing or read-only parent and a read-only directory."""
    p = _named(option, path)
    if p.exists() and not p.is_dir():
        raise ArgumentError(f"{option} {str(p)!r} is a file, not a directory")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise ArgumentError(f"{option} {str(p)!r} is not writable")
    else:
        _writable_parent(option, p)
    return p


def read_json_object(path: Path, what: str) -> dict:
    """The JSON object in ``path``, refusing a file that is not JSON or not an object."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ArgumentError(f"{what} {str(path)!r} is not valid JSON ({detail})") from None
    if not isinstance(data, dict):
        raise ArgumentError(f"{what} {str(path)!r} must hold a JSON object, got "
                            f"{type(data).__name__}")
    return data


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block ends, so that a group of files is written
    completely or not at all; the interrupt is raised afterwards. A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, None)


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a uniquely named temporary file beside ``path``, then ``os.replace`` it
    onto ``path``: readers see the old or the new file, never a partial one, and concurrent
    writers never share a temporary name. The temporary file is removed on any failure."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.",
                                suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def directory_lock(directory: Path, option: str = "--out") -> Iterator[Path]:
    """Hold ``directory/.lock`` (created with O_CREAT | O_EXCL, holding the pid) for the block;
    a second holder is refused with a one-line message, a lock left by a dead process is taken
    over, and the lock is removed on exit."""
    lock = directory / ".lock"
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                text = lock.read_text().strip()
            except FileNotFoundError:
                continue
            pid = int(text) if text.isdigit() else None
            if pid is not None and not _pid_alive(pid):
                lock.unlink(missing_ok=True)
                continue
            holder = f"process {pid}" if pid is not None else "another process"
            raise ArgumentError(
                f"{option} {str(directory)!r} is in use by {holder} (lock file {str(lock)!r}); "
                "wait for it to finish or remove the lock if no run is active"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        break
    else:
        raise ArgumentError(f"{option} {str(directory)!r}: could not take the lock {str(lock)!r}")
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
