"""vse's file I/O: writing result files so that a reader never sees a half-written file, or a mix of
two runs, and reading JSON Lines back.

- `write_atomic(path, data)`: the data go to a temporary file in the same folder, are flushed
  to disk (fsync), and the temporary file is renamed over ``path`` (``os.replace``, atomic on
  POSIX within one file system). A reader sees the old file or the new one, never a cut one;
  a SIGTERM half-way leaves the old file and a stray ``.tmp`` file, never a 0-byte result.
  The file gets mode 0644 (readable by all, like a file written by ``open``), not mkstemp's 0600.
- `write_set(folder, files)`: a set of files that belong together (config, results, table,
  plot). All are written into a fresh sibling folder, which is then swapped in for ``folder``
  with two renames: ``folder`` -> ``folder.old-*``, new -> ``folder``. A reader that opens the
  files after the swap sees one run's set; between the two renames ``folder`` does not exist
  for a moment (POSIX has no atomic exchange of two non-empty folders without renameat2), so a
  reader can find it missing, but never mixed. Files in ``folder`` that are not in ``files``
  are carried over into the new set unchanged, so the swap loses nothing it was not asked to
  replace. One writer at a time: two concurrent `write_set` calls on one folder are not safe.
- `read_jsonl(path)`: the JSON value of each non-blank line of a JSONL file; a line that is not JSON
  is an error naming the file and line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FILE_MODE = 0o644
DIR_MODE = 0o755


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def write_atomic(path: Path | str, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (str is written as UTF-8) in one rename; mode 0644."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_as_bytes(data))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_set(folder: Path | str, files: Mapping[str, bytes | str]) -> None:
    """Replace the files named in ``files`` (plain names, no folders) in ``folder`` as one set."""
    folder = Path(folder)
    for name in files:
        if not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"write_set takes plain file names, got {name!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
    old: Path | None = None
    try:
        os.chmod(new, DIR_MODE)
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name not in files:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.copytree(entry, new / entry.name, symlinks=True)
                    else:
                        shutil.copy2(entry, new / entry.name, follow_symlinks=False)
        for name, data in files.items():
            with open(new / name, "wb") as f:
                f.write(_as_bytes(data))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(new / name, FILE_MODE)
        _fsync_dir(new)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.rmdir(old)  # only the unique name is wanted; rename needs it free
            os.rename(folder, old)
        os.rename(new, folder)
        _fsync_dir(folder.parent)
    except BaseException:
        if old is not None and not folder.exists():
            os.rename(old, folder)  # put the previous set back
            old = None
        shutil.rmtree(new, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def read_jsonl(path: Path | str) -> list[Any]:
    """The JSON value of each non-blank line of ``path`` (UTF-8), in order.

    A line that is not JSON raises ValueError naming ``path`` and the line number: a results or
    batch file is never read past a corrupt line as if it were shorter.
    """
    out = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from None
    return out
