"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from mnist_jax.errors import PathError, UserError


NAME_MAX = 255  # bytes in one name (Linux's and macOS's file systems), where pathconf cannot say
PATH_MAX = 4096  # bytes in a path, with its closing NUL (Linux), where pathconf cannot say
TEMPORARY_STEM_MAX = 200  # bytes of a name kept in its temporary's: room for mkstemp's 14 more under NAME_MAX


def write_staged(path: str | os.PathLike, data: bytes) -> Path:
    """`data` in a new hidden file beside `path`, flushed to disk: its path, for os.replace onto
    `path`, which then holds all of `data` at once. The caller removes it if it is not renamed."""
    path = Path(path)
    stem = path.name if len(os.fsencode(path.name)) <= TEMPORARY_STEM_MAX else "long-name"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would make outputs private to this user
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename,
    so `path` holds either its old content or all of the new, never a part."""
    tmp = write_staged(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_name_lengths(path: str | os.PathLike | None, room: int = 0) -> None:
    """A PathError where the OS would refuse `path` as "File name too long": a name in it longer than
    its file system allows (255 bytes on most), or the whole path, with `room` bytes more for what
    goes inside it, longer than PATH_MAX. None (no path given) passes."""
    if path is None:
        return
    path = Path(path)
    folder = Path(path.anchor or os.curdir)
    limit = _pathconf(folder, "PC_NAME_MAX", NAME_MAX)
    for name in path.parts[1:] if path.anchor else path.parts:
        size = len(os.fsencode(name))
        if size > limit:
            raise PathError(f"{path}: a name of {size:,} bytes in it, over the {limit} its file system allows "
                            f"(file name too long); give a shorter one")
        folder = folder / name
        limit = _pathconf(folder, "PC_NAME_MAX", limit)  # another file system may be mounted there
    size, limit = len(os.fsencode(path.absolute())) + room, _pathconf(Path(os.curdir), "PC_PATH_MAX", PATH_MAX)
    if size >= limit:
        inside = " with the files that go inside it" if room else ""
        raise PathError(f"{path}: a path of {size:,} bytes{inside}, over the {limit - 1:,} the OS allows "
                        f"(file name too long); give a shorter one")


def _pathconf(path: Path, name: str, default: int) -> int:
    """os.pathconf's `name` for `path`, or `default` where it cannot say (no such folder yet)."""
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError):
        return default
    return value if value > 0 else default


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
    or anything inside `apart_from` (the run directory the output is made from); a PathError if a
    name in either is too long for the file system."""
    path = Path(path)
    check_name_lengths(path)
    check_name_lengths(apart_from)
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
