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
