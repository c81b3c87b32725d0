"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from mnist_jax.errors import UserError


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename,
    so `path` holds either its old content or all of the new, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make outputs private to this user
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file at `path` (a link followed). An OSError, before anything is read,
    for what is not one: a folder, a FIFO (reading it would wait for a writer), a device (/dev/zero
    never ends), or a file over `limit` bytes (larger than anything this project writes there)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", os.fspath(path))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file: a device, FIFO or socket", os.fspath(path))
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"{st.st_size:,} bytes, more than the {limit:,} it can be", os.fspath(path))
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)
    finally:
        os.close(fd)


def check_new_output(path: str | os.PathLike, *, apart_from: str | os.PathLike | None = None) -> None:
    """A UserError if writing `path` would destroy what the user did not ask to replace: a folder,
    a symbolic link, a device, FIFO or socket (an atomic rename would replace it with a plain file),
    or anything inside `apart_from` (the run directory the output is made from)."""
    path = Path(path)
    if os.fspath(path).endswith(os.sep) or path.is_dir():
        raise UserError(f"{path}: is a folder; give the file to write, e.g. {path / 'classifier'}")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError:
        mode = None  # a name the OS refuses: writing it says why, in one line
    if mode is not None and stat.S_ISLNK(mode):
        raise UserError(f"{path}: is a symbolic link; give the file itself, or a new name")
    if mode is not None and not stat.S_ISREG(mode):
        raise UserError(f"{path}: is not a regular file (a device, FIFO or socket); give a file to write")
    if apart_from is not None:
        try:
            inside = path.parent.resolve().is_relative_to(Path(apart_from).resolve())
        except OSError:
            inside = False
        if inside:
            raise UserError(f"{path}: is inside {apart_from}, the run it is made from; write it elsewhere")
