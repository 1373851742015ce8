"""Issue #31.3: no tool loses a user's file.

resize_kernels never writes over its source (also through a symlink or a hard link) and refuses
an existing DST without --force; the ONNX export checks its output before the export; every
temporary file is named after its target and process, and the next write removes those a
killed run left (the converter's 257 MB one included).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmdwnet.utils.fileio import TEMP_MARK, _host, atomic_open, check_output, temp_beside

ROOT = Path(__file__).resolve().parents[2]
TINY_CFG = ('_base_ = [{base!r}]\nmodel = dict(backbone=dict(arch=dict(_delete_=True, '
            'embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])), '
            'head=dict(in_channels=128))\n')


def _run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))


def _dead_pid():
    proc = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True)
    return int(proc.stdout)


def _stale(target, pid):
    path = Path(target).parent / f'.{Path(target).name}{TEMP_MARK}{pid}-{_host()}-0123abcd'
    path.write_bytes(b'half a checkpoint')
    return path


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """(config, training-style checkpoint) of a tiny DWNet classifier."""
    from mmdwnet.apis import init_model
    tmp = tmp_path_factory.mktemp('tools_files')
    base = ROOT / 'configs' / 'classification' / 'dwnet-tiny_8xb128_in1k.py'
    cfg = tmp / 'tiny.py'
    cfg.write_text(TINY_CFG.format(base=str(base)))
    src = tmp / 'epoch_300.pth'
    torch.save(dict(state_dict=init_model(str(cfg)).state_dict(), meta=dict(epoch=300),
                    optimizer=dict(state={}, param_groups=[])), src)
    return cfg, src


def test_resize_kernels_never_overwrites_its_source(checkpoint, tmp_path):
    from mmdwnet.analysis.resize_kernels import resize_checkpoint
    cfg, src = checkpoint
    before = src.read_bytes()
    (tmp_path / 'link.pth').symlink_to(src)
    os.link(src, tmp_path / 'hard.pth')
    for dst in (src, tmp_path / 'link.pth', tmp_path / 'hard.pth'):
        for force in (False, True):
            with pytest.raises(FileExistsError, match='is the input file.*refusing to overwrite'):
                resize_checkpoint(str(src), str(dst), str(cfg), force=force)
    assert src.read_bytes() == before
    # the command line: an error message and exit status 2, also with --force
    proc = _run('tools/analysis_tools/resize_kernels.py', src, tmp_path / 'link.pth', '--config',
                cfg, '--force')
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'is the input file' in proc.stderr and 'refusing to overwrite' in proc.stderr
    assert src.read_bytes() == before


def test_resize_kernels_needs_force_for_an_existing_dst(checkpoint, tmp_path):
    from mmdwnet.analysis.resize_kernels import resize_checkpoint
    cfg, src = checkpoint
    dst = tmp_path / 'resized.pth'
    dst.write_bytes(b'precious')
    with pytest.raises(FileExistsError, match='pass --force'):
        resize_checkpoint(str(src), str(dst), str(cfg))
    assert dst.read_bytes() == b'precious'
    assert resize_checkpoint(str(src), str(dst), str(cfg), force=True) == []
    assert torch.load(dst)['meta']['epoch'] == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ['resized.pth']


def test_onnx_export_checks_the_output_before_building_anything(tmp_path):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnx')
    from mmdwnet.deployment.onnx import export_and_verify
    missing_cfg = str(tmp_path / 'no_such_config.py')  # built only after the output check
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    with pytest.raises(NotADirectoryError, match='is a file, not a folder'):
        export_and_verify(missing_cfg, 'none', str(blocker / 'out.onnx'), (32, 32),
                          exporter='torchscript')
    existing = tmp_path / 'model.onnx'
    existing.write_bytes(b'old')
    with pytest.raises(FileExistsError, match='pass --force'):
        export_and_verify(missing_cfg, 'none', str(existing), (32, 32), exporter='torchscript')
    with pytest.raises(IsADirectoryError):
        export_and_verify(missing_cfg, 'none', str(tmp_path), (32, 32), exporter='torchscript')
    proc = _run('tools/deployment/pytorch2onnx.py', missing_cfg, 'none', '--shape', 32, 32,
                '--output', blocker / 'out.onnx', '--exporter', 'torchscript')
    assert proc.returncode == 1 and 'is a file, not a folder' in proc.stderr, proc.stderr[-2000:]


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes in read-only folders')
def test_unwritable_folder_is_reported_first(tmp_path):
    folder = tmp_path / 'ro'
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match='cannot write in'):
            check_output(str(folder / 'sub' / 'out.onnx'))
    finally:
        folder.chmod(0o700)


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / 'weights.pth'
    dead = _stale(target, _dead_pid())
    alive = _stale(target, os.getppid())  # a running process: maybe still writing
    other = tmp_path / f'.other.pth{TEMP_MARK}{_dead_pid()}-{_host()}-0123abcd'
    other.write_bytes(b'x')
    with pytest.warns(UserWarning, match='killed while writing'):
        with atomic_open(str(target), 'wb') as f:
            f.write(b'new')
    assert not dead.exists() and alive.exists() and other.exists()
    assert target.read_bytes() == b'new'
    tmp = temp_beside(str(target))
    assert Path(tmp).name.startswith(f'.weights.pth{TEMP_MARK}{os.getpid()}-')
    os.unlink(tmp)


def test_converter_removes_what_a_killed_conversion_left(tmp_path):
    from mmdwnet.apis import init_model
    from mmdwnet.converters.writer import convert_file
    from official_layout import official_backbone_state
    base = ROOT / 'configs' / 'classification' / 'dwnet-tiny_8xb128_in1k.py'
    (tmp_path / 'tiny.py').write_text(TINY_CFG.format(base=str(base)))
    model = init_model(str(tmp_path / 'tiny.py'))
    state = model.state_dict()
    official = official_backbone_state({k[9:]: v for k, v in state.items()
                                        if k.startswith('backbone.')}, classification=True)
    official.update({'head.weight': state['head.fc.weight'], 'head.bias': state['head.fc.bias']})
    torch.save({'model': official}, tmp_path / 'official.pth')
    dst = tmp_path / 'out' / 'converted.pth'
    dst.parent.mkdir()
    stale = _stale(dst, _dead_pid())
    with pytest.warns(UserWarning, match='killed while writing'):
        convert_file(str(tmp_path / 'official.pth'), str(dst))
    assert not stale.exists() and sorted(p.name for p in dst.parent.iterdir()) == [dst.name]
