"""The compiled-kernel cache cannot take the process down (issue 14.1): a truncated, garbage or
foreign library in the cache is detected before loading (manifest hash/size, then a load in a
child process), rebuilt with one warning naming the file and the reason; a read-only cache
folder, concurrent builds and folders of killed builds are handled.  Every case runs in a fresh
Python process with ``MMDWNET_OPS_CACHE`` pointing at a temporary folder."""
import ctypes.util
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NO_COMPILER = shutil.which(os.environ.get('CC') or 'gcc') is None and shutil.which('cc') is None
pytestmark = [pytest.mark.slow, pytest.mark.skipif(NO_COMPILER, reason='no C compiler')]

ROOT = Path(__file__).resolve().parents[2]
# Loads the kernels, runs the op on them and compares with the reference backend.
CHILD = r'''
import json, warnings
warnings.simplefilter('always')
with warnings.catch_warnings(record=True) as caught:
    import torch
    from mmdwnet.ops import local_aggregate
    from mmdwnet.ops.backends import cpu, select
    from mmdwnet.ops.backends.reference import local_aggregate_loop
    x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 2, 3, 3, 5, 5)
    backend = select('local_aggregate', x, w).name
    diff = (local_aggregate(x, w) - local_aggregate_loop(x, w)).abs().max().item()
print(json.dumps(dict(backend=backend, diff=diff, library=cpu.build(),
                      warnings=[str(c.message) for c in caught if 'mmdwnet.ops' in str(c.message)])))
'''


def run(cache, **env):
    proc = subprocess.run([sys.executable, '-c', CHILD], capture_output=True, text=True,
                          cwd=ROOT, timeout=300,
                          env=dict(os.environ, MMDWNET_OPS_CACHE=str(cache),
                                   MMDWNET_OPS_BACKEND='auto', PYTHONPATH=str(ROOT), **env))
    assert proc.returncode == 0, proc.stderr[-3000:]  # never a crash
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['diff'] <= 1e-5
    return result


@pytest.fixture(scope='module')
def good_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp('good')
    result = run(cache)
    assert result['backend'] == 'openmp' and result['warnings'] == []
    entries = [p for p in cache.iterdir()]
    assert len(entries) == 1 and entries[0].name.startswith('mmdw_ops_')
    return entries[0]


def copy_cache(good_cache, tmp_path):
    cache = tmp_path / 'cache'
    shutil.copytree(good_cache, cache / good_cache.name)
    return cache, cache / good_cache.name / 'libmmdw_ops.so'


def set_manifest(lib):
    data = lib.read_bytes()
    manifest = lib.parent / 'manifest.json'
    record = json.loads(manifest.read_text())
    record.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    manifest.write_text(json.dumps(record))


def expect_rebuilt(cache, lib, reason_words):
    result = run(cache)
    assert result['backend'] == 'openmp' and result['library'] == str(lib)
    assert len(result['warnings']) == 1, result['warnings']
    message = result['warnings'][0]
    assert str(lib) in message and 'rebuilding' in message
    assert any(w in message for w in reason_words), message
    from mmdwnet.ops.backends import cpu
    assert cpu.verify(str(lib.parent)) is None  # the rebuilt entry is sound


def test_truncated_library_is_rebuilt(good_cache, tmp_path):
    cache, lib = copy_cache(good_cache, tmp_path)
    lib.write_bytes(lib.read_bytes()[:4096])
    expect_rebuilt(cache, lib, ['truncated'])


def test_garbage_library_is_checked_in_a_child_process(good_cache, tmp_path):
    """Garbage whose manifest matches (hash and size) gets past the manifest check; the child
    process load fails instead of this one."""
    cache, lib = copy_cache(good_cache, tmp_path)
    data = bytearray(lib.read_bytes())
    data[:64] = bytes(range(64))  # no ELF header
    lib.write_bytes(bytes(data))
    set_manifest(lib)
    expect_rebuilt(cache, lib, ['child process'])


def test_foreign_library_is_rebuilt(good_cache, tmp_path):
    """Another shared library at the cache path (with or without a matching manifest)."""
    foreign = ctypes.util.find_library('m') or ctypes.util.find_library('c')
    path = next((Path(d) / foreign for d in ('/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu',
                                             '/lib64', '/usr/lib64', '/lib', '/usr/lib')
                 if (Path(d) / foreign).is_file()), None)
    if path is None:
        pytest.skip('no system shared library found to copy')
    cache, lib = copy_cache(good_cache, tmp_path)
    shutil.copyfile(path, lib)
    from mmdwnet.ops.backends import cpu
    assert 'size' in cpu.verify(str(lib.parent))  # the manifest check (no child needed)
    set_manifest(lib)  # a matching manifest: the child's symbol check fails
    expect_rebuilt(cache, lib, ['child process'])


def test_unwritable_cache_folder_builds_privately(tmp_path):
    """Nothing to load and nothing can be written (here: the cache path lies under a file, which
    even root cannot write into): the kernels are built for this process, with a warning."""
    blocker = tmp_path / 'not-a-folder'
    blocker.write_text('')
    cache = blocker / 'cache'
    result = run(cache)
    assert result['backend'] == 'openmp' and len(result['warnings']) == 1
    assert 'cannot write the kernel cache folder' in result['warnings'][0]
    assert str(cache) in result['warnings'][0]


@pytest.mark.skipif(hasattr(os, 'geteuid') and os.geteuid() == 0,
                    reason='root ignores folder permissions')
def test_read_only_cache_folder_with_a_valid_build(good_cache, tmp_path):
    cache, lib = copy_cache(good_cache, tmp_path)
    for folder in (cache, lib.parent):
        folder.chmod(0o555)
    try:
        result = run(cache)
        assert result['backend'] == 'openmp' and result['warnings'] == []
    finally:
        for folder in (cache, lib.parent):
            folder.chmod(0o755)


def test_concurrent_builds_and_stale_build_folders(tmp_path):
    cache = tmp_path / 'cache'
    cache.mkdir()
    stale = cache / '.build-999999999-killed'  # a build killed mid-way (no such process)
    stale.mkdir()
    (stale / 'libmmdw_ops.so').write_bytes(b'half')
    env = dict(os.environ, MMDWNET_OPS_CACHE=str(cache), PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, '-c', CHILD], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
             for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result['backend'] == 'openmp' and result['diff'] <= 1e-5
        assert result['warnings'] == []
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 1 and names[0].startswith('mmdw_ops_'), names  # one build, no debris


def test_compiler_with_flags_in_cc_is_split(tmp_path):
    """``CC="gcc -O2"`` is a command line (split like a shell), not a program name."""
    cc = shutil.which('gcc') or shutil.which('cc')
    result = run(tmp_path / 'cache', CC=f'{cc} -O2')
    assert result['backend'] == 'openmp' and result['warnings'] == []


@pytest.mark.parametrize('cc, words', [('no-such-cc-mmdwnet', ["'no-such-cc-mmdwnet'", 'not found']),
                                       ('gcc "-O2', ['cannot be split', 'quoting'])])
def test_missing_compiler_with_read_only_cache_falls_back(tmp_path, cc, words):
    """A CC that names no compiler (or cannot be parsed), with a cache that cannot be written:
    one warning naming CC and what to do, the pure-PyTorch ops run, no temporary folder left."""
    blocker = tmp_path / 'not-a-folder'
    blocker.write_text('')
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    result = run(blocker / 'cache', CC=cc, TMPDIR=str(tmp))
    assert result['backend'] == 'reference' and result['library'] is None
    assert len(result['warnings']) == 1, result['warnings']
    message = result['warnings'][0]
    assert 'CC=' in message and 'pure-PyTorch' in message, message
    assert all(w in message for w in words), message
    # no leaked private build folder (torch may put its own folders there)
    assert [p for p in tmp.iterdir() if p.name.startswith('mmdwnet-ops-')] == []
