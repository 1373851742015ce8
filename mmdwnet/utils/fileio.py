"""Writing files so that no run, interrupted or failed, loses or truncates a user's file."""
import contextlib
import os
import tempfile
from typing import IO, Iterator


def temp_beside(path: str) -> str:
    """A new empty temporary file in ``path``'s (existing) folder, hidden and named after
    ``path``, for the caller to rename over ``path`` or remove. It has the mode a plain
    ``open()`` would give ``path`` (``0o666`` less the umask), not ``mkstemp``'s ``0o600``."""
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp',
                               dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
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
