"""Writing files so that no run, interrupted or failed, loses or truncates a user's file.

Every temporary file is written next to its target and named after it and after the process
that writes it: ``.NAME.mmdwnet-tmp-PID-HOST-TOKEN``. A run killed while writing (``SIGKILL``,
out of memory, a power cut) cannot remove its temporary file; the next write of the same target
does (:func:`remove_stale_temps`), when the process named in the file no longer exists on this
host.
"""
import contextlib
import os
import re
import secrets
import socket
import warnings
from typing import IO, Iterator, List, Sequence

TEMP_MARK = '.mmdwnet-tmp-'


def _host() -> str:
    """This machine's name as it appears in temporary-file names (no path separators)."""
    return re.sub(r'[^A-Za-z0-9_.-]', '_', socket.gethostname()) or 'localhost'


def _pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (also one of another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: str) -> List[str]:
    """Remove the temporary files of ``path`` (see the module docstring) left by killed runs.

    Only files written on this host by a process that no longer exists are removed; those of
    a running process (another run writing the same target) and those of other hosts (a shared
    file system) are kept.

    Returns:
        list[str]: the removed files.
    """
    folder, base = os.path.split(os.path.abspath(path))
    pattern = re.compile(re.escape(f'.{base}{TEMP_MARK}') + r'(\d+)-(.+)-[0-9a-f]{8}$')
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match is None or match.group(2) != _host() or _pid_alive(int(match.group(1))):
            continue
        stale = os.path.join(folder, name)
        try:
            os.unlink(stale)
        except FileNotFoundError:
            continue  # another run removed it meanwhile
        removed.append(stale)
        warnings.warn(f'removed {stale}: a temporary file of {path} left by a run that was '
                      f'killed while writing it (process {match.group(1)} is gone)')
    return removed


def temp_beside(path: str) -> str:
    """A new empty temporary file in ``path``'s (existing) folder, hidden and named after
    ``path`` and this process (``.NAME.mmdwnet-tmp-PID-HOST-TOKEN``), for the caller to rename
    over ``path`` or remove. Temporary files of ``path`` that killed runs left behind are
    removed first (:func:`remove_stale_temps`). It has the mode a plain ``open()`` would give
    ``path`` (``0o666`` less the umask), not ``mkstemp``'s ``0o600``."""
    remove_stale_temps(path)
    folder, base = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f'.{base}{TEMP_MARK}{os.getpid()}-{_host()}-'
                           f'{secrets.token_hex(4)}')
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


@contextlib.contextmanager
def atomic_open(path: str, mode: str = 'w', *, replace: bool = True) -> Iterator[IO]:
    """Open a temporary file next to ``path``; when the block ends without an error, move it to
    ``path`` in one step. On an error the temporary file is removed, and an existing ``path`` is
    left as it was.

    Args:
        path (str): the file to write; its folder is created if missing.
        mode (str): ``'w'`` (text) or ``'wb'`` (bytes).
        replace (bool): replace an existing ``path`` (``os.replace``). If False, an existing
            ``path`` raises FileExistsError, also when another process creates it meanwhile
            (``os.link``, atomic too).

    The file gets the mode a plain ``open()`` would give it (:func:`temp_beside`).

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), 'report.md')
        >>> with atomic_open(path) as f:
        ...     _ = f.write('# report\\n')
        >>> open(path).read()
        '# report\\n'
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_beside(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def same_file(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` name one file (also through a symlink or a hard link)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: str, *, force: bool = False, inputs: Sequence[str] = (),
                 label: str = 'output') -> None:
    """Refuse an output ``path`` that a tool must not write, before the tool starts its work.

    Raises:
        FileExistsError: ``path`` is one of ``inputs`` (also through a symlink or a hard
            link), or exists and ``force`` is False.
        IsADirectoryError: ``path`` is a folder.
        NotADirectoryError: a parent of ``path`` is a file.
        PermissionError: its folder (or the nearest existing parent, when folders are to be
            created) cannot be written.
    """
    for src in inputs:
        if same_file(src, path):
            raise FileExistsError(f'{label} {path} is the input file {src}: refusing to '
                                  'overwrite it; write to another file')
    if os.path.isdir(path):
        raise IsADirectoryError(f'{label} {path} is a folder; give a file name')
    if os.path.lexists(path) and not force:
        raise FileExistsError(f'{label} {path} exists; pass --force to overwrite it')
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(f'{label} {path}: {folder} is a file, not a folder')
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f'{label} {path}: cannot write in {folder} (permission denied); '
                              'choose another output path')
