"""The CPU inference fast path of the dense layers (mmdwnet.ops.dense) changes no outputs, runs
where it should and nowhere else."""
import pytest
import torch
import torch.nn as nn
from mmcv.cnn.bricks.transformer import FFN
from torch.profiler import profile

import mmdwnet  # noqa: F401
from mmdwnet.ops import dense
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
    return FFN(embed_dims=c, feedforward_channels=4 * c, num_fcs=2, act_cfg=act_cfg,
               add_identity=False, **kwargs).eval()


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
        out = dense.ffn_residual(x, ffn, norm_layer)
    assert out is not None and out.shape == x.shape
    assert (out - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize('with_bn', [False, True])
def test_ffn_residual_without_biases(with_bn):
    c = 16
    ffn = _ffn(c)
    ffn.layers[0][0].bias = None
    ffn.layers[1].bias = None
    bn = _randomize_norms(nn.BatchNorm2d(c)).eval() if with_bn else None
    x = torch.randn(1, 6, 7, c)
    with torch.no_grad():
        normed = bn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) if with_bn else x
        ref = x + ffn(normed)
        out = dense.ffn_residual(x, ffn, bn)
    assert out is not None
    assert (out - ref).abs().max().item() <= 1e-5


def test_ffn_residual_declines_what_it_cannot_do():
    c = 8
    x = torch.randn(1, 4, 4, c)
    with torch.no_grad():
        # layer scale: not folded, the caller runs the modules
        assert dense.ffn_residual(x, _ffn(c, layer_scale_init_value=0.1), None) is None
        # a BN without running statistics normalises with batch statistics
        bn = nn.BatchNorm2d(c, track_running_stats=False).eval()
        assert dense.ffn_residual(x, _ffn(c), bn) is None
        # an unknown norm
        assert dense.ffn_residual(x, _ffn(c), nn.GroupNorm(2, c)) is None


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


def test_linear_helper():
    layer = nn.Linear(12, 20).eval()
    x = torch.randn(3, 5, 12).transpose(0, 1)  # non-contiguous
    with torch.no_grad():
        out, ran = _ran_fast_op(lambda: dense.linear(x, layer))
    assert ran and out.shape == (5, 3, 20)
    assert (out - layer(x)).abs().max().item() <= 1e-5
    layer.bias = None
    with torch.no_grad():
        assert (dense.linear(x, layer) - layer(x)).abs().max().item() <= 1e-5


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
