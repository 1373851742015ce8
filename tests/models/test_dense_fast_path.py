"""The CPU inference fast path of the dense layers (mmdwnet.models.layers.dense: the Linear and FFN layer
types) changes no outputs, runs where it should and nowhere else."""
import pytest
import torch
import torch.nn as nn
from torch.profiler import profile

import mmdwnet  # noqa: F401
from mmdwnet.models.layers import dense
from mmdwnet.registry import MODELS

TINY = dict(embed_dims=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 4, 8])
BACKBONES = ['DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet',
             'LocalMLPNet']
FAST_OP = 'mkldnn::_linear_pointwise'

pytestmark = pytest.mark.skipif(not dense._onednn_linear_ok(),
                                reason='oneDNN linear not available in this PyTorch build')


def _randomize_norms(model):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.)
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model


def _backbone(name, seed=0):
    torch.manual_seed(seed)
    # window models pad the small late-stage maps, as in detection
    extra = dict(pad_to_window=True) if name in ('SwinNet', 'LocalMLPNet') else {}
    model = MODELS.build(dict(type=name, arch=TINY, img_size=64, drop_path_rate=0.1,
                              out_indices=(0, 1, 2, 3), **extra))
    return _randomize_norms(model).eval()


def _ran_fast_op(fn):
    with profile() as prof:
        result = fn()
    return result, any(e.name == FAST_OP for e in prof.events())


@pytest.mark.parametrize('name', BACKBONES)
def test_backbone_outputs_equal_with_and_without_fast_path(name):
    model = _backbone(name)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        with dense.fast_inference(False):
            ref, ran = _ran_fast_op(lambda: model(x))
        assert not ran, 'fast_inference(False) must keep the module path'
        out, ran = _ran_fast_op(lambda: model(x))
    assert ran, 'the fast path did not run in eval + no_grad on a CPU float32 input'
    for r, o in zip(ref, out):
        assert r.shape == o.shape
        assert (r - o).abs().max().item() <= 1e-5


@pytest.mark.parametrize('name', ['DWNet', 'SwinNet'])
def test_fast_path_off_where_it_could_change_results(name, monkeypatch):
    model = _backbone(name)
    x = torch.randn(1, 3, 64, 64)
    # autograd recording (e.g. the effective receptive field tool): module path, gradients flow
    _, ran = _ran_fast_op(lambda: model(x.requires_grad_()))
    assert not ran
    x = x.detach()
    with torch.no_grad():
        model.train()  # BN batch statistics, drop path
        _, ran = _ran_fast_op(lambda: model(x))
        assert not ran
        model.eval()
        monkeypatch.setenv('MMDWNET_FAST_INFERENCE', '0')
        _, ran = _ran_fast_op(lambda: model(x))
        assert not ran
        monkeypatch.setenv('MMDWNET_FAST_INFERENCE', '1')
        _, ran = _ran_fast_op(lambda: model(x))
        assert ran
        monkeypatch.setitem(dense._probe, 'ok', False)  # oneDNN failed its check
        _, ran = _ran_fast_op(lambda: model(x))
        assert not ran


def test_fast_path_off_while_tracing():
    model = _backbone('DWNet')
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        graph = torch.jit.trace(model, (x, ), check_trace=False).inlined_graph
    # FLOP counters trace the model: they must see the ordinary linear layers
    assert 'mkldnn::_linear_pointwise' not in str(graph)
    assert 'aten::linear' in str(graph)


def _ffn(c, act_cfg=dict(type='GELU'), **kwargs):
    torch.manual_seed(1)
    return dense.FFN(c, 4 * c, act_cfg=act_cfg, **kwargs).eval()


@pytest.mark.parametrize('norm', ['bn', 'ln', None])
@pytest.mark.parametrize('act', ['GELU', 'ReLU', 'SiLU'])
def test_ffn_residual_matches_modules(norm, act, monkeypatch):
    c = 24
    ffn = _ffn(c, dict(type=act))
    if norm == 'bn':
        norm_layer = _randomize_norms(nn.BatchNorm2d(c)).eval()
        apply_norm = lambda t: norm_layer(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # noqa
    elif norm == 'ln':
        norm_layer = _randomize_norms(nn.LayerNorm(c)).eval()
        apply_norm = norm_layer
    else:
        norm_layer, apply_norm = None, lambda t: t
    # several chunks, the last one short
    monkeypatch.setattr(dense, 'HIDDEN_CHUNK_BYTES', 100 * 4 * c * 4)
    x = torch.randn(2, 13, 11, c)
    with torch.no_grad():
        ref = x + ffn(apply_norm(x))
        out = ffn.fused_residual(x, norm_layer)
    assert out is not None and out.shape == x.shape
    assert (out - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize('with_bn', [False, True])
def test_ffn_residual_without_biases(with_bn):
    c = 16
    ffn = _ffn(c)
    ffn.fc1.bias = None
    ffn.fc2.bias = None
    bn = _randomize_norms(nn.BatchNorm2d(c)).eval() if with_bn else None
    x = torch.randn(1, 6, 7, c)
    with torch.no_grad():
        normed = bn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) if with_bn else x
        ref = x + ffn(normed)
        out = ffn.fused_residual(x, bn)
    assert out is not None
    assert (out - ref).abs().max().item() <= 1e-5


def test_ffn_residual_declines_what_it_cannot_do():
    c = 8
    x = torch.randn(1, 4, 4, c)
    with torch.no_grad():
        # layer scale: not folded, the caller runs the modules
        assert _ffn(c, layer_scale_init_value=0.1).fused_residual(x, None) is None
        # a BN without running statistics normalises with batch statistics
        bn = nn.BatchNorm2d(c, track_running_stats=False).eval()
        assert _ffn(c).fused_residual(x, bn) is None
        # an unknown norm
        assert _ffn(c).fused_residual(x, nn.GroupNorm(2, c)) is None


def test_block_falls_back_to_modules_for_layer_scale():
    from mmdwnet.models.backbones.blocks import MixerBlock
    block = MixerBlock(16, nn.Identity()).eval()
    block.ffn = _ffn(16, layer_scale_init_value=0.5)
    x = torch.randn(1, 5, 5, 16)
    with torch.no_grad():
        out = block(x)
        with dense.fast_inference(False):
            ref = block(x)
    assert (out - ref).abs().max().item() <= 1e-6


def test_linear_layer():
    layer = dense.Linear(12, 20).eval()
    assert isinstance(layer, nn.Linear) and set(layer.state_dict()) == {'weight', 'bias'}
    x = torch.randn(3, 5, 12).transpose(0, 1)  # non-contiguous
    ref = nn.functional.linear(x, layer.weight, layer.bias)
    with torch.no_grad():
        out, ran = _ran_fast_op(lambda: layer(x))
    assert ran and out.shape == (5, 3, 20)
    assert (out - ref).abs().max().item() <= 1e-5
    layer.bias = None
    with torch.no_grad():
        assert (layer(x) - nn.functional.linear(x, layer.weight)).abs().max().item() <= 1e-5


def test_ffn_keeps_mmcv_layout_and_folds_batch_norm_once():
    """Same state-dict keys as mmcv's FFN; the BN fold is made once per eval period, again
    after training or a weight change, never per forward."""
    from mmcv.cnn.bricks.transformer import FFN as MMCVFFN
    c = 16
    ffn = _ffn(c)
    mmcv_ffn = MMCVFFN(embed_dims=c, feedforward_channels=4 * c, num_fcs=2, add_identity=False)
    assert list(ffn.state_dict()) == list(mmcv_ffn.state_dict())
    assert ffn.fc1 is ffn.layers[0][0] and ffn.fc2 is ffn.layers[1]
    bn = _randomize_norms(nn.BatchNorm2d(c)).eval()
    x = torch.randn(1, 5, 6, c)
    calls = []
    real_fold = dense._fold_batch_norm

    def counting_fold(*args):
        calls.append(1)
        return real_fold(*args)

    def ref():
        return x + ffn(bn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))

    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(dense, '_fold_batch_norm', counting_fold)
        for _ in range(3):
            assert (ffn.fused_residual(x, bn) - ref()).abs().max().item() <= 1e-5
        assert len(calls) == 1
        bn.running_mean.add_(0.5)  # a weight change (e.g. load_state_dict) refolds
        assert (ffn.fused_residual(x, bn) - ref()).abs().max().item() <= 1e-5
        assert len(calls) == 2
        ffn.train()
        assert ffn._fold is None  # dropped when training starts
        ffn.eval()
        dense.prepare_for_inference(ffn)  # no blocks inside: nothing to fold ahead
        ffn.folded_fc1(bn)
        ffn.fused_residual(x, bn)
        assert len(calls) == 3


def test_prepare_for_inference_folds_every_block_ahead():
    model = _backbone('DWNet').train()
    dense.prepare_for_inference(model)
    assert not model.training
    blocks = [b for s in model.stages for b in s.blocks]
    assert all(b.ffn._fold is not None for b in blocks)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        with dense.fast_inference(False):
            ref = model(x)
    assert all((o - r).abs().max().item() <= 1e-5 for o, r in zip(out, ref))


def test_switch_is_the_shared_one():
    from mmdwnet.models.layers import switches
    from mmdwnet.ops import switches as ops_switches
    assert dense.fast_inference is switches.fast_inference
    assert ops_switches.fast_inference is switches.fast_inference  # the old import still works
    layer = dense.Linear(8, 8).eval()
    with torch.no_grad(), switches.fast_inference(False):
        _, ran = _ran_fast_op(lambda: layer(torch.randn(2, 8)))
    assert not ran


def test_torch_compile_in_inference_mode():
    """torch.compile traces eval + no_grad forwards: the fast path must step aside (inductor
    cannot lower oneDNN linears on non-constant weights) and outputs stay the same."""
    torch._dynamo.reset()
    model = MODELS.build(dict(type='DWNet', arch=dict(embed_dims=8, depths=[1, 1, 1, 1],
                                                      num_heads=[1, 2, 4, 8]), img_size=32))
    model = _randomize_norms(model).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = torch.compile(model)(x)
    torch._dynamo.reset()
    assert (ref[-1] - out[-1]).abs().max().item() <= 1e-5


def test_block_gives_any_mixers_plain_linears_the_fast_path():
    """A mixer written with plain nn.Linear (no mmdwnet import) gets the fast path in a block;
    same object, same state-dict keys, same outputs; nn.Linear subclasses are left alone."""
    from mmdwnet.models.backbones.blocks import MixerBlock

    class Proj(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(16, 16)

        def forward(self, x):
            return self.proj(x)

    class MyLinear(nn.Linear):
        pass

    mixer = Proj()
    mixer.other = MyLinear(16, 16)
    proj = mixer.proj
    keys = list(mixer.state_dict())
    block = MixerBlock(16, mixer, norm2_cfg=dict(type='LN')).eval()
    assert block.mixer.proj is proj and type(proj) is dense.Linear
    assert type(block.mixer.other) is MyLinear
    assert list(block.mixer.state_dict()) == keys
    x = torch.randn(2, 5, 5, 16)
    with torch.no_grad():
        _, ran = _ran_fast_op(lambda: proj(x))
        assert ran, 'the mixer\'s nn.Linear did not run the fast path'
        with dense.fast_inference(False):
            ref = block(x)
        assert (block(x) - ref).abs().max().item() <= 1e-5
