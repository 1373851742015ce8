"""Issue 2: every registered name builds under each default scope; no collisions; bad names."""
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope, init_default_scope

import mmdwnet
from mmdwnet.apis import init_model
from mmdwnet.registry import UnknownModuleError, registered_names

TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4])
MIXER_ARGS = dict(DWConv={}, DynamicDWConv={}, IDynamicDWConv=dict(group_channels=4),
                  ShiftedWindowAttention=dict(num_heads=2), SlidingWindowAttention=dict(num_heads=2),
                  LocalMLP=dict(num_heads=2))
BACKBONES = ['LocalMixerNet', 'DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet',
             'SlidingWindowNet', 'LocalMLPNet']
MIXERS = ['DWConv', 'DynamicDWConv', 'IDynamicDWConv', 'ShiftedWindowAttention',
          'SlidingWindowAttention', 'LocalMLP']
SCOPES = [None, 'mmpretrain', 'mmdet', 'mmseg']
# Table 13 (other architectures): VOLO and the mixer-swap builder, tested in test_table13.py
OTHER_ARCHITECTURES = ['VOLONet', 'VOLOClsHead', 'OutlookAttention', 'MixerSwap']
# Table 12 norm layers, tested in test_ccbn.py
NORMS = ['CCBN', 'SyncCCBN']
# task heads that need a toolbox: registered by ``import mmdwnet.models.heads`` (tests/models/test_seg_heads.py)
HEADS = ['ClassWeightAdjustedUPerHead']


def test_registered_names_are_the_documented_ones():
    names = BACKBONES + MIXERS + OTHER_ARCHITECTURES + NORMS
    # ``import mmdwnet`` alone registers no task head (it imports no toolbox) ...
    out = subprocess.run([sys.executable, '-c', 'import mmdwnet.registry as r, mmdwnet; '
                          'print(",".join(r.registered_names()))'],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.split(',') == sorted(names)
    # ... the heads module adds them (imported by configs that use them)
    import mmdwnet.models.heads  # noqa: F401
    assert registered_names() == sorted(names + HEADS)
    assert mmdwnet.__version__.count('.') == 2


def _cfg(name):
    if name in MIXERS:
        return dict(type=name, embed_dims=16, **MIXER_ARGS[name])
    return dict(type=name, arch=TINY, img_size=224)


def _check_built(name, module):
    assert type(module).__name__ == name
    module.eval()  # D-DW's pooled BN needs eval mode for batch 1, as in the official code
    if name in MIXERS:
        assert module(torch.randn(1, 14, 14, 16)).shape == (1, 14, 14, 16)
    else:
        assert module(torch.randn(1, 3, 224, 224))[-1].shape == (1, 128, 7, 7)


@pytest.mark.parametrize('scope', SCOPES)
def test_plain_names_build_in_every_scope_via_config(scope):
    """``custom_imports`` + plain ``type='...'`` builds through init_model in each scope."""
    for name in BACKBONES + MIXERS:
        cfg = Config(dict(custom_imports=dict(imports=['mmdwnet'], allow_failed_imports=False),
                          model=_cfg(name)))
        if scope is not None:
            cfg.default_scope = scope
        _check_built(name, init_model(cfg))


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_names_resolve_through_the_toolbox_registry(scope):
    """The toolbox's own MODELS registry (what its Runner uses) finds plain and scoped names."""
    init_default_scope(scope)
    registry = ROOT_MODELS.children[scope]
    for name in ['DWNet', 'SwinNet', 'DWConv']:
        with DefaultScope.overwrite_default_scope(scope):
            _check_built(name, registry.build(_cfg(name)))
            _check_built(name, registry.build(dict(_cfg(name), type=f'mmdwnet.{name}')))


def test_scoped_names_without_default_scope():
    for name in BACKBONES + MIXERS:
        _check_built(name, ROOT_MODELS.build(dict(_cfg(name), type=f'mmdwnet.{name}')))


def test_no_name_collides_with_the_toolboxes():
    import mmdet.models  # noqa: F401
    import mmpretrain.models  # noqa: F401
    import mmseg.models  # noqa: F401
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    ours = set(registered_names())
    for registry in (CLS, DET, SEG):
        assert not ours & set(registry.module_dict), registry.scope
    # in the root registry our names map to our classes (nobody else registered them)
    for name in ours:
        assert ROOT_MODELS.get(name).__module__.startswith('mmdwnet.')


def test_unknown_name_lists_close_names():
    cfg = Config(dict(default_scope='mmdet', custom_imports=dict(imports=['mmdwnet']),
                      model=dict(type='DWNett')))
    with pytest.raises(UnknownModuleError, match=r"Close names: \['DWNet'"):
        init_model(cfg)


def test_unknown_mixer_lists_close_names():
    with pytest.raises(KeyError, match=r"'DWConvv' is not a registered mmdwnet module. Close "
                       r"names: \['DWConv'"):
        ROOT_MODELS.build(dict(type='LocalMixerNet', arch=TINY, mixer=dict(type='DWConvv')))


@pytest.mark.parametrize('missing', ['mmdet', 'mmseg', 'mmpretrain'])
def test_import_survives_a_missing_toolbox(missing):
    """``import mmdwnet`` and building a backbone work when a toolbox is not installed."""
    code = f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == {missing!r} or name.startswith({missing!r} + '.'):
            raise ModuleNotFoundError('No module named ' + repr(name), name=name)
sys.meta_path.insert(0, Block())
import mmdwnet, torch
from mmengine.registry import MODELS
m = MODELS.build(dict(type='DWNet', arch=dict(embed_dims=16, depths=[1,1,1,1], num_heads=1)))
m.eval()
print(m(torch.randn(2, 3, 64, 64))[-1].shape)
assert {missing!r} not in sys.modules
"""
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'torch.Size([2, 128, 2, 2])' in proc.stdout
