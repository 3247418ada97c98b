"""Atomic file writes (a reader, or a run killed mid-write, never sees a half-written file) and
the checks of a path a user names, made before it is opened."""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autocompress.exceptions import BadInputError, WriteError

# OSErrors that mean "this place cannot take the file", not "the program is wrong".
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}


def storage_error(exc: BaseException) -> str | None:
    """Why ``exc`` is a full or read-only storage ("No space left on device"), else None.

    Libraries report it differently: OSError with an errno, pyarrow and torch with the text only,
    SQLite as "database or disk is full".
    """
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return exc.strerror or os.strerror(exc.errno)
    text = str(exc)
    for needle, why in (("No space left on device", "No space left on device"),
                        ("database or disk is full", "No space left on device"),
                        ("Disk quota exceeded", "Disk quota exceeded"),
                        ("Read-only file system", "Read-only file system"),
                        ("attempt to write a readonly database", "Read-only file system"),
                        ("file write failed", "write failed (disk full?)")):  # fmt: skip
        if needle in text:
            return why
    return None


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file"))  # fmt: skip


def path_kind(path: str | Path) -> str | None:
    """What ``path`` names, following links: "a file" (regular), "a folder", "a FIFO", "a
    character device", ...; None when nothing is there (or a link points nowhere). Only stats."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # no permission to look, a name too long: the caller's error says so
        return f"unreadable ({exc.strerror or exc})"
    except ValueError:  # an embedded NUL byte
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def check_regular_file(path: str | Path, what: str, error: type[BadInputError] = BadInputError) -> Path:
    """Refuse, before anything opens it, a ``path`` that is not an existing regular file.

    A FIFO opened for reading blocks until some writer comes, and a device such as /dev/zero
    never ends: neither may be handed to ``open``, ``read_text`` or a library that reads.

    Args:
        path: the file the user named.
        what: how the message names it ("--weights", "search space", ...).
        error: the exception class to raise (a ``BadInputError``).

    Raises:
        error: "<what> <path> does not exist" or "... is a folder / a FIFO / ..., not a regular file".
    """
    return _check_kind(path, "a file", "a regular file", what, error)


def check_folder(path: str | Path, what: str, error: type[BadInputError] = BadInputError) -> Path:
    """Refuse a ``path`` that is not an existing folder (a file, a FIFO, nothing), without opening it.

    Raises:
        error: "<what> <path> does not exist" or "<what> <path> is a FIFO, not a folder".
    """
    return _check_kind(path, "a folder", "a folder", what, error)


def _check_kind(path: str | Path, want: str, called: str, what: str, error: type[BadInputError]) -> Path:
    path = Path(path)
    kind = path_kind(path)
    if kind is None:
        raise error(f"{what} {path} does not exist")
    if kind != want:
        raise error(f"{what} {path} is {kind}, not {called}")
    return path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_not_special(path: str | Path, what: str, error: type[BadInputError] = BadInputError) -> Path:
    """Refuse a ``path`` that exists and is neither a regular file nor a folder (a FIFO, a
    device, a socket); a missing path is fine (it will be created)."""
    path = Path(path)
    kind = path_kind(path)
    if kind is not None and kind not in ("a file", "a folder"):
        raise error(f"{what} {path} is {kind}, not a regular file")
    return path


def ensure_writable_dir(folder: str | Path, what: str = "output folder") -> Path:
    """Check, before any long work, that files can be written in ``folder`` (or, when it does not
    exist yet, in its nearest existing parent, where it would be created). Leaves nothing behind.

    Raises:
        WriteError: naming the folder and the reason (read-only, no permission, disk full).
    """
    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    try:
        if not probe_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{probe_dir} is not a folder")
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".write-test.", suffix=".tmp")
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise WriteError(f"cannot write to {what} {folder}: {exc.strerror or exc}") from None
    return folder


_UMASK = os.umask(0o022)  # read at import (os.umask sets as it reads), and put back
os.umask(_UMASK)


def _umask() -> int:
    """The process's umask now: Linux reports it in /proc/self/status without changing it (a
    process that set another umask after import gets it); elsewhere the one read at import."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK


def as_if_created(path: str | Path, folder: bool = False) -> None:
    """Give a temporary file (or folder) the mode an ordinary create would have (0666 / 0777 less
    the umask): ``mkstemp``/``mkdtemp`` make them owner-only, and the rename would keep that, so
    tables and results in a shared folder were unreadable to everyone else."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        as_if_created(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        why = storage_error(exc)
        if why is None:
            raise
        raise WriteError(f"cannot write {path}: {why}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_with(path: str | Path, writer: Callable[[Path], object]) -> None:
    """Call ``writer(tmp_path)`` and move the result into place."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_torch_save(obj: object, path: str | Path) -> None:
    import torch

    atomic_write_with(path, lambda tmp: torch.save(obj, tmp))


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` (libyaml's parser where installed: every command that names a target reads
    every device.yaml) that refuses a key given twice in one mapping with a ``yaml.YAMLError``
    saying where: safe_load keeps the last one silently, so the first of two ``width:`` lines in a
    hand-edited file would be ignored without a word."""
    loader = _unique_key_loader()(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(exc: BaseException) -> str:
    """Where and what a ``yaml.YAMLError`` is (`` at line L, column C: problem``), or ''."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None)
    why = f": {' '.join(str(problem).split())}" if problem else ""
    return where + why


@functools.cache
def _unique_key_loader() -> type:
    import yaml

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class UniqueKeyLoader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else []:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    again = key in seen
                except TypeError:  # an unhashable key: the constructor says so
                    continue
                if again:
                    raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                            f"found duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader
