"""Writing files so that no run, interrupted or failed, loses or truncates a user's file."""
import contextlib
import os
import tempfile
from typing import IO, Iterator


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

    The file gets the mode a plain ``open()`` would give it (``0o666`` less the umask), not
    ``mkstemp``'s private ``0o600``.

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
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
