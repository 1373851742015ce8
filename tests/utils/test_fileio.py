"""mmdwnet.utils.fileio.atomic_open: a write either lands whole or leaves the old file as it
was (what every tool that writes a user's file goes through)."""
import os

import pytest

from mmdwnet.utils.fileio import atomic_open


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_writes_and_replaces(tmp_path):
    path = tmp_path / 'sub' / 'report.md'
    with atomic_open(str(path)) as f:
        f.write('one\n')
    assert path.read_text() == 'one\n'
    with atomic_open(str(path), 'wb') as f:
        f.write(b'two\n')
    assert path.read_bytes() == b'two\n'
    assert _names(path.parent) == ['report.md']  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes it, not 0600


def test_an_error_keeps_the_old_file(tmp_path):
    path = tmp_path / 'weights.pth'
    path.write_bytes(b'old')
    with pytest.raises(RuntimeError, match='interrupted'):
        with atomic_open(str(path), 'wb') as f:
            f.write(b'half of the new')
            raise RuntimeError('interrupted')
    assert path.read_bytes() == b'old'
    assert _names(tmp_path) == ['weights.pth']


def test_no_replace_refuses_an_existing_file(tmp_path):
    path = tmp_path / 'model.onnx'
    path.write_bytes(b'old')
    with pytest.raises(FileExistsError):
        with atomic_open(str(path), 'wb', replace=False) as f:
            f.write(b'new')
    assert path.read_bytes() == b'old'
    assert _names(tmp_path) == ['model.onnx']
    fresh = tmp_path / 'fresh.onnx'
    with atomic_open(str(fresh), 'wb', replace=False) as f:
        f.write(b'new')
    assert fresh.read_bytes() == b'new'


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', got 'a'"):
        with atomic_open(str(tmp_path / 'x'), 'a'):
            pass
