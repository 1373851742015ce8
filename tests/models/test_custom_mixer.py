"""Issue 29: adding a mixer is one new file + one config, with no edit anywhere in mmdwnet/.

A mixer defined in a temporary module outside the package, loaded through ``custom_imports``,
builds ``LocalMixerNet``, trains a step, saves and reloads, gets the dense fast path, is probed
by the connectivity analysis and is timed by the benchmark.
"""
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.utils import import_modules_from_strings

import mmdwnet  # noqa: F401
from mmdwnet.models.mixers import MIXERS, MixerNotProbeable, SpatialMixer

MODULE = 'my_mixer_mod'
MIXER_SOURCE = '''
import torch.nn as nn
from mmdwnet.models.mixers import MIXERS, SpatialMixer


@MIXERS.register_module()
class MyMixer(SpatialMixer):
    """Static depth-wise k x k conv between two plain nn.Linear layers, (B, H, W, C)."""

    def __init__(self, embed_dims, kernel_size=3, stage=None):
        super().__init__()
        self.v = nn.Linear(embed_dims, embed_dims)
        self.conv = nn.Conv2d(embed_dims, embed_dims, kernel_size, padding=kernel_size // 2,
                              groups=embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x):
        return self.proj(self.conv(self.v(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1))

    def aggregation(self, x):
        return self.v(x).permute(0, 3, 1, 2), self.conv


@MIXERS.register_module()
class NoHookMixer(SpatialMixer):
    def __init__(self, embed_dims):
        super().__init__()
        self.proj = nn.Linear(embed_dims, embed_dims)

    def forward(self, x):
        return self.proj(x)
'''
TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])


@pytest.fixture
def mixer_module(tmp_path, monkeypatch):
    (tmp_path / f'{MODULE}.py').write_text(textwrap.dedent(MIXER_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield MODULE
    for name in ('MyMixer', 'NoHookMixer'):  # leave the registry as the other tests expect
        MIXERS.module_dict.pop(name, None)
    sys.modules.pop(MODULE, None)


def _config():
    return Config(dict(
        custom_imports=dict(imports=['mmdwnet', MODULE], allow_failed_imports=False),
        default_scope='mmpretrain',
        model=dict(
            type='ImageClassifier',
            backbone=dict(type='LocalMixerNet', arch=TINY, drop_path_rate=0.,
                          mixer=dict(type='MyMixer', kernel_size=5)),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=4, in_channels=128,
                      loss=dict(type='CrossEntropyLoss')))))


def _build(cfg):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model)


def _benchmark(model, shape, batch):
    """Images per second of ``model`` in inference (mmdwnet.benchmark, what the benchmark tool
    measures with)."""
    from mmdwnet.benchmark import measure_model
    return measure_model(model, shape, batch=batch, rounds=2, memory=False)['images_per_s']


def test_mixer_outside_the_package_builds_trains_saves_probes_and_benchmarks(
        mixer_module, tmp_path):
    from mmpretrain.structures import DataSample
    cfg = _config()
    import_modules_from_strings(**cfg.custom_imports)
    torch.manual_seed(0)
    model = _build(cfg)
    mixers = [b.mixer for s in model.backbone.stages for b in s.blocks]
    assert [type(m).__name__ for m in mixers] == ['MyMixer'] * 4
    assert [m.conv.kernel_size for m in mixers] == [(5, 5)] * 4
    # the block gave the mixer's plain nn.Linear layers the dense fast path
    from mmdwnet.models.layers import Linear
    assert all(type(m.proj) is Linear and type(m.v) is Linear for m in mixers)

    # one training step changes the mixer's weights
    model.train()
    x = torch.randn(4, 3, 64, 64)
    samples = [DataSample().set_gt_label(i % 4) for i in range(4)]
    before = mixers[0].conv.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = model.loss(x, samples)
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert not torch.equal(before, mixers[0].conv.weight)

    # save and reload into a fresh model: same outputs
    model.eval()
    path = tmp_path / 'model.pth'
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    fresh = _build(cfg).eval()
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, mode='tensor'), model(x, mode='tensor'))

    # the connectivity analysis finds and probes it; a mixer without the hook is reported
    from mmdwnet.analysis.connectivity import (default_mixer_configs, measure_mixer,
                                               probe_mixers, registered_mixers, to_markdown)
    assert {'MyMixer', 'NoHookMixer'} <= set(registered_mixers())
    assert dict(type='MyMixer') in default_mixer_configs()
    props = measure_mixer(dict(type='MyMixer'), cost_shape=None)
    assert props.sparse_channels and not props.dynamic
    assert props.receptive_field == (3, 3)  # the default kernel_size
    assert props.share_positions == 'full' and props.sampling == 'sliding'
    not_probed = []
    results = probe_mixers([dict(type='MyMixer'), dict(type='NoHookMixer')], not_probed=not_probed,
                           cost_shape=None)
    assert [r.name for r in results] == ['MyMixer()']
    assert [n for n, _ in not_probed] == ['NoHookMixer()']
    assert 'NoHookMixer()' in to_markdown(results, not_probed)
    with pytest.raises(MixerNotProbeable, match='NoHookMixer has no `aggregation'):
        probe_mixers([dict(type='NoHookMixer')], cost_shape=None)

    # the benchmark times it
    assert _benchmark(model, (3, 64, 64), batch=2) > 0


def test_unregistered_mixer_names_the_way_to_register_it():
    from mmdwnet.models.mixers import build_mixer
    with pytest.raises(KeyError, match='MIXERS.register_module'):
        build_mixer(dict(type='NotAMixerAnywhere'), embed_dims=8)
    with pytest.raises(TypeError, match='unknown context keys'):
        build_mixer(dict(type='DWConv'), embed_dims=8, channels=3)


def test_mixer_context_is_typed_and_offered_by_field():
    from mmdwnet.models.mixers import CONTEXT_KEYS, MixerContext, build_mixer
    assert CONTEXT_KEYS == ('embed_dims', 'num_heads', 'input_resolution', 'shift',
                            'pad_to_window', 'stage')
    ctx = MixerContext(embed_dims=16, num_heads=4, input_resolution=(8, 8), shift=True)
    swin = build_mixer(dict(type='ShiftedWindowAttention', window_size=4), ctx)
    assert (swin.embed_dims, swin.num_heads, swin.shift_size) == (16, 4, 2)
    # the config wins over the context
    dw = build_mixer(dict(type='DWConv', share_channels=True, num_heads=2), ctx)
    assert dw.num_heads == 2
    assert isinstance(swin, SpatialMixer) and isinstance(dw, nn.Module)
