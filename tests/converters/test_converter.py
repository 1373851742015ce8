"""Issue 3: the official checkpoint converter infers architectures and fails clearly."""
import subprocess
import sys

import pytest
import torch

from mmdwnet.apis import init_model
from mmdwnet.converters import UnrecognisedCheckpoint, convert_official, infer_backbone
from mmdwnet.registry import MODELS
from official_layout import official_backbone_state

CONVERTER = 'tools/model_converters/official2mmdwnet.py'


@pytest.mark.parametrize('name, arch, expect_heads', [
    ('DWNet', 'tiny', None),
    ('DynamicDWNet', 'base', None),
    ('IDynamicDWNet', 'tiny', [3, 6, 12, 24]),
    ('IDynamicDWNet', 'base', [4, 8, 16, 32]),
    ('SwinNet', 'base', [4, 8, 16, 32]),
])
def test_infers_the_architecture_of_full_size_models(name, arch, expect_heads):
    bb = MODELS.build(dict(type=name, arch=arch))
    official = official_backbone_state(bb.state_dict(), classification=True)
    info = infer_backbone(official)
    assert info['type'] == name
    zoo = bb.arch_zoo[arch]
    assert info['arch']['embed_dims'] == zoo['embed_dims']
    assert info['arch']['depths'] == zoo['depths']
    if expect_heads:
        assert info['arch']['num_heads'] == expect_heads
    assert info['mixer'][('window_size' if name == 'SwinNet' else 'kernel_size')] == 7


def test_classification_round_trip_through_the_cli(tmp_path, repo_root):
    torch.manual_seed(0)
    model = init_model(_cls_config(tmp_path))
    backbone = {k[len('backbone.'):]: v for k, v in model.state_dict().items()
                if k.startswith('backbone.')}
    official = official_backbone_state(backbone, classification=True)
    official['head.weight'] = model.state_dict()['head.fc.weight']
    official['head.bias'] = model.state_dict()['head.fc.bias']
    torch.save({'model': official}, tmp_path / 'official.pth')
    proc = subprocess.run([sys.executable, str(repo_root / CONVERTER), str(tmp_path / 'official.pth'),
                           str(tmp_path / 'ours.pth'), '--config-out', str(tmp_path / 'ours.py')],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'IDynamicDWNet' in proc.stdout
    rebuilt = init_model(str(tmp_path / 'ours.py'), str(tmp_path / 'ours.pth'))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x, mode='tensor'), model(x, mode='tensor'), atol=1e-6)


def _cls_config(tmp_path):
    from mmengine.config import Config
    cfg = Config(dict(default_scope='mmpretrain', custom_imports=dict(imports=['mmdwnet']),
                      model=dict(type='ImageClassifier',
                                 backbone=dict(type='IDynamicDWNet', arch=dict(
                                     embed_dims=16, depths=[1, 2, 1, 1], num_heads=[2, 4, 8, 16])),
                                 neck=dict(type='GlobalAveragePooling'),
                                 head=dict(type='LinearClsHead', num_classes=5, in_channels=128))))
    return cfg


@pytest.mark.parametrize('ckpt, message', [
    ({'foo': 1}, r"unrecognised checkpoint with top-level keys \['foo'\]"),
    ({'model': {'conv1.weight': torch.zeros(1)}}, 'no patch_embed.proj.weight'),
    ({'state_dict': {'neck.x': torch.zeros(1)}}, 'without backbone'),
    ({'state_dict': {'backbone.stages.0.x': torch.zeros(1)}}, 'already an mmdwnet checkpoint'),
    ([1, 2], 'expected a dict checkpoint'),
])
def test_unrecognised_checkpoints_fail_clearly(ckpt, message):
    with pytest.raises(UnrecognisedCheckpoint, match=message):
        convert_official(ckpt)


def test_unknown_keys_are_not_silently_dropped():
    bb = MODELS.build(dict(type='DWNet', arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                                                   num_heads=1)))
    official = official_backbone_state(bb.state_dict(), classification=True)
    official['layers.0.blocks.0.attn2conv.extra.weight'] = torch.zeros(1)
    official['head.weight'], official['head.bias'] = torch.zeros(3, 128), torch.zeros(3)
    with pytest.raises(UnrecognisedCheckpoint, match="unknown block key 'layers.0.blocks.0.attn2conv"):
        convert_official({'model': official})


def test_cli_refuses_a_pickle_that_needs_unsafe_loading(tmp_path, repo_root):
    """The converter loads with weights_only=True: arbitrary objects are refused."""
    import argparse
    torch.save({'model': argparse.Namespace(a=1)}, tmp_path / 'evil.pth')
    proc = subprocess.run([sys.executable, str(repo_root / CONVERTER), str(tmp_path / 'evil.pth'),
                           str(tmp_path / 'out.pth')], capture_output=True, text=True)
    assert proc.returncode == 2
    assert 'could not be read with weights_only=True' in proc.stderr
    assert not (tmp_path / 'out.pth').exists()


# ---------------------------------------------------------------- issue 12: never lose data
def _convert(args):
    """official2mmdwnet.py's logic (:func:`mmdwnet.converters.writer.convert_file`) on the
    tool's arguments ``SRC DST [--config-out CFG] [--force]`` (the command line itself is run
    as a subprocess above)."""
    from mmdwnet.converters.writer import convert_file
    src, dst, *rest = args
    config_out = rest[rest.index('--config-out') + 1] if '--config-out' in rest else None
    return convert_file(src, dst, config_out, force='--force' in rest)


def _refused(args):
    """The message of the error :func:`_convert` raises: one the tool reports with exit
    status 2 (UnrecognisedCheckpoint or OSError), not a crash."""
    from mmdwnet.converters.official import UnrecognisedCheckpoint
    with pytest.raises((UnrecognisedCheckpoint, OSError)) as err:
        _convert(args)
    return str(err.value)


def _snapshot(folder):
    """{relative path: bytes} of every file under ``folder`` (temporary files included)."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.fixture
def workdir(tmp_path, reference_dir):
    import shutil
    shutil.copy(reference_dir / 'cls_dwnet_narrow.pth', tmp_path / 'src.pth')
    (tmp_path / 'old.pth').write_bytes(b'an older conversion the user keeps')
    (tmp_path / 'old.py').write_text('# a config the user wrote\n')
    return tmp_path


@pytest.mark.parametrize('args, message', [
    (['src.pth', 'src.pth'], 'DST src.pth is the source checkpoint'),
    (['src.pth', 'link.pth'], 'DST link.pth is the source checkpoint'),
    (['src.pth', 'new.pth', '--config-out', 'src.pth'], '--config-out src.pth is the source'),
    (['src.pth', 'new.pth', '--config-out', 'new.pth'], 'are the same file'),
    (['src.pth', 'old.pth'], 'DST old.pth exists; pass --force'),
    (['src.pth', 'new.pth', '--config-out', 'old.py'], '--config-out old.py exists; pass --force'),
    (['src.pth', 'src.pth', '--force'], 'DST src.pth is the source checkpoint'),
])
def test_converter_refuses_to_overwrite(args, message, workdir, monkeypatch):
    (workdir / 'link.pth').symlink_to(workdir / 'src.pth')
    monkeypatch.chdir(workdir)
    before = _snapshot(workdir)
    assert message in _refused(args)
    assert _snapshot(workdir) == before  # byte for byte, nothing added


def test_converter_overwrites_with_force(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    _convert(['src.pth', 'old.pth', '--config-out', 'old.py', '--force'])
    assert torch.load(workdir / 'old.pth', weights_only=True)['meta']['converted_from'] == 'src.pth'
    assert 'DWNet' in (workdir / 'old.py').read_text()
    assert sorted(p.name for p in workdir.iterdir()) == ['old.pth', 'old.py', 'src.pth']


def test_failure_while_writing_leaves_existing_files_untouched(workdir, monkeypatch):
    """A full disk mid-write: the previous DST stays byte for byte, no partial file remains."""
    import errno

    import mmdwnet.converters.writer as writer

    def full_disk(obj, f):
        with open(f, 'wb') as out:
            out.write(b'partial')
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(writer.torch, 'save', full_disk)
    monkeypatch.chdir(workdir)
    before = _snapshot(workdir)
    assert 'No space left on device' in _refused(['src.pth', 'old.pth', '--config-out', 'new.py',
                                                  '--force'])
    assert _snapshot(workdir) == before


@pytest.mark.parametrize('case, args, message', [
    # the checkpoint is written first, then the config cannot be: no DST may remain
    ('cls_dwnet_narrow', ['src.pth', 'sub/new.pth', '--config-out', 'src.pth/new.py'],
     'cannot write src.pth/new.py'),
    # a detector whose arch has no mmdwnet config: refused before anything is written
    ('det_dwnet_narrow', ['src.pth', 'sub/new.pth', '--config-out', 'sub/new.py'],
     'convert the backbone alone instead'),
])
def test_failure_after_converting_leaves_nothing_behind(case, args, message, reference_dir,
                                                       tmp_path, monkeypatch):
    import shutil
    if case.startswith('det'):  # a whole mmdet 2.x detector file: backbone + a head key
        ckpt = torch.load(reference_dir / f'{case}.pth', weights_only=True)
        ckpt['state_dict']['roi_head.bbox_head.0.fc_cls.weight'] = torch.zeros(81, 1024)
        torch.save(ckpt, tmp_path / 'src.pth')
    else:
        shutil.copy(reference_dir / f'{case}.pth', tmp_path / 'src.pth')
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    assert message in _refused(args)
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / 'sub').exists()  # the folder made for DST is removed again


def _drop(prefix):
    return lambda s: [s.pop(k) for k in list(s) if k.startswith(prefix)]


@pytest.mark.parametrize('damage, message', [
    (_drop('layers.1.blocks.0.'), 'missing keys: stages.1.blocks.0.'),  # a block
    (_drop('layers.1.'), "'depths': [1], "),  # a whole stage: stages 2, 3 are stray
    (_drop('layers.2.downsample.'), 'missing keys: stages.2.downsample'),
    (_drop('layers.3.blocks.0.attn2conv.bn2.'), 'missing keys: stages.3.blocks.0.mixer.norm_out'),
    (lambda s: s.update({'layers.1.blocks.1.attn2conv.conv.weight': torch.zeros(32, 1, 5, 5)}),
     'stages.1.blocks.1.mixer.aggregate.weight: checkpoint (32, 1, 5, 5) vs model (32, 1, 7, 7)'),
    (lambda s: s.update({'layers.0.blocks.0.mlp.fc2.weight': torch.zeros(16, 32)}),
     'stages.0.blocks.0.ffn'),
    (lambda s: s.update({'head.weight': torch.zeros(10, 64)}), 'do not fit 128 features'),
    (lambda s: s.update({'layers.0.blocks.0.attn2conv.stray': torch.zeros(1)}),
     "unknown block key 'layers.0.blocks.0.attn2conv.stray'"),
])
def test_damaged_official_checkpoint_is_an_error(damage, message, reference_dir, tmp_path,
                                                 monkeypatch):
    state = torch.load(reference_dir / 'cls_dwnet_narrow.pth', weights_only=True)['model']
    damage(state)
    torch.save({'model': state}, tmp_path / 'src.pth')
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    assert message in _refused(['src.pth', 'dst.pth', '--config-out', 'dst.py'])
    assert _snapshot(tmp_path) == before
