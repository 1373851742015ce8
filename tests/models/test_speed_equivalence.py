"""Speed work changes no outputs: conv-BN fusion, fast mixer paths (the benchmark tool's tests:
tests/benchmark/)."""

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import fuse_conv_bn
from torch.nn.modules.batchnorm import _BatchNorm

import mmdwnet  # noqa: F401
from mmdwnet.models.mixers.dwconv import DynamicDWAggregate, IDynamicDWAggregate
from mmdwnet.ops import local_aggregate
from mmdwnet.ops.backends.reference import local_aggregate_unfold
from mmdwnet.registry import MODELS

TINY = dict(embed_dims=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 4, 8])
VARIANTS = {
    'DWNet': dict(type='DWNet'),
    'DWNet-share-channels': dict(type='DWNet', mixer=dict(share_channels=True)),
    'DWNet-ffn-dwconv': dict(type='DWNet', ffn_dwconv_kernel=3),
    'DWNet-ffn-dwconv-norm-after': dict(type='DWNet', ffn_dwconv_kernel=3,
                                        ffn_dwconv_norm_first=False),
    'DynamicDWNet': dict(type='DynamicDWNet'),
    'IDynamicDWNet': dict(type='IDynamicDWNet'),
}


def _build(cfg, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(dict(cfg, arch=TINY, img_size=64, drop_path_rate=0.))
    for m in model.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    model.eval()
    return model


def _remaining_bn(model):
    return sorted(name for name, m in model.named_modules() if isinstance(m, _BatchNorm))


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_fuse_conv_bn_folds_every_conv_bn_pair(variant):
    model = fuse_conv_bn(_build(VARIANTS[variant]))
    left = _remaining_bn(model)
    # Left: the pre-FFN norm (no conv before it), the norm after a non-conv aggregation
    # (dynamic, or channel-shared) and Table 6's BN *before* its conv (x + DW(BN(x)): zero
    # padding makes folding it into the conv inexact at the borders); nothing that follows a conv.
    for name in left:
        leaf = name.rsplit('.', 1)[-1]
        if name.endswith('ffn_dwconv.norm'):
            assert model.get_submodule(name.rsplit('.', 1)[0]).norm_first, name
            continue
        assert leaf in ('norm2', 'norm_mid'), name
        if leaf == 'norm_mid':
            agg = model.get_submodule(name.rsplit('.', 1)[0] + '.aggregate')
            assert not isinstance(agg, nn.Conv2d), name
    for name, m in model.named_modules():
        for leaf in ('norm_in', 'norm_out'):
            if hasattr(m, 'proj_in'):
                assert isinstance(getattr(m, leaf), nn.Identity), f'{name}.{leaf}'
        if isinstance(m, (DynamicDWAggregate, IDynamicDWAggregate)):
            assert isinstance(m.norm, nn.Identity), f'{name}.norm (kernel generator)'
        if getattr(m, 'ffn_dwconv', None) is not None and not m.ffn_dwconv.norm_first:
            assert isinstance(m.ffn_dwconv.norm, nn.Identity), name
    if variant == 'DWNet':
        assert all(n.endswith('norm2') for n in left)  # static DW conv folds its norm_mid too
    assert len(left) < len(_remaining_bn(_build(VARIANTS[variant])))


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_fused_and_unfused_outputs_agree(variant):
    model = _build(VARIANTS[variant])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)[-1]
        fused = fuse_conv_bn(model)(x)[-1]
    assert (ref - fused).abs().max().item() <= 1e-4
    assert ref.abs().max().item() > 1e-2  # not a trivially zero output


def test_dynamic_dw_is_one_op_for_the_batch(monkeypatch):
    """D-DW runs the batch as one call of the compiled channels-last kernel on CPU float32
    (training and inference; its backward one call of the compiled backward), else as one
    grouped conv (batch folded into channels); never a per-image loop.  Both equal per-image
    convs."""
    from mmdwnet.ops.backends import cpu as cpu_kernels
    mod = DynamicDWAggregate(8, 7).eval()
    calls = []
    conv2d, ddw = torch.nn.functional.conv2d, cpu_kernels.dynamic_depthwise
    ddw_backward = cpu_kernels.dynamic_depthwise_backward

    def counting(inp, weight, *args, **kwargs):
        calls.append(('conv2d', tuple(inp.shape), kwargs.get('groups')))
        return conv2d(inp, weight, *args, **kwargs)

    def counting_ddw(inp, *args):
        calls.append(('kernel', tuple(inp.shape)))
        return ddw(inp, *args)

    def counting_ddw_backward(grad, inp, *args):
        calls.append(('kernel backward', tuple(inp.shape)))
        return ddw_backward(grad, inp, *args)

    monkeypatch.setattr(torch.nn.functional, 'conv2d', counting)
    monkeypatch.setattr(cpu_kernels, 'dynamic_depthwise', counting_ddw)
    monkeypatch.setattr(cpu_kernels, 'dynamic_depthwise_backward', counting_ddw_backward)
    x = torch.randn(4, 8, 9, 9, requires_grad=True)
    out_train = mod(x)
    expected = [('kernel', (4, 8, 9, 9))] if cpu_kernels.available() else \
        [('conv2d', (1, 32, 9, 9), 32)]
    assert calls == expected
    calls.clear()
    out_train.sum().backward()
    if cpu_kernels.available():
        assert calls == [('kernel backward', (4, 8, 9, 9))]
    calls.clear()
    with torch.no_grad():
        out_infer = mod(x)
    assert calls == expected
    calls.clear()
    from mmdwnet.ops.switches import use_ops_backend
    with use_ops_backend('torch'), torch.no_grad():
        out_ref = mod(x)
    assert calls == [('conv2d', (1, 32, 9, 9), 32)]
    monkeypatch.undo()
    with torch.no_grad():
        k = mod.generate_weight(x).view(4, 8, 1, 7, 7)
        per_image = torch.cat([
            torch.nn.functional.conv2d(x[i:i + 1], k[i], mod.bias, padding=3, groups=8)
            for i in range(4)])
    assert (out_train - per_image).abs().max().item() <= 1e-5
    assert (out_infer - per_image).abs().max().item() <= 1e-5
    assert (out_ref - per_image).abs().max().item() <= 1e-5


@pytest.mark.parametrize('k', [7, 3, 4])
def test_static_depthwise_conv_trains_on_the_compiled_kernels(k, monkeypatch):
    """A static depth-wise conv (DWNet's aggregation, SameDepthwiseConv2d) trained on CPU
    float32 runs as the D-DW op with its one kernel expanded over the batch (the compiled
    kernels and backward: aten's depth-wise gradient is 2-4x slower); its output and every
    gradient equal nn.Conv2d's.  Calls that record no autograd graph keep the conv."""
    from mmdwnet.models.mixers.dwconv import SameDepthwiseConv2d
    from mmdwnet.models.mixers import dwconv
    torch.manual_seed(k)
    conv = SameDepthwiseConv2d(8, k)
    plain = nn.Conv2d(8, 8, k, padding='same', groups=8)
    plain.load_state_dict(conv.state_dict())
    calls = []
    op = dwconv.dynamic_depthwise_conv2d
    monkeypatch.setattr(dwconv, 'dynamic_depthwise_conv2d',
                        lambda *a: calls.append(tuple(a[1].shape)) or op(*a))
    x = torch.randn(3, 8, 10, 13, requires_grad=True)
    out = conv(x)
    assert calls == [(3, 8, k, k)]
    want = plain(x)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, conv.weight, conv.bias), g)
    ref = torch.autograd.grad(want, (x, plain.weight, plain.bias), g)
    for name, a, b in zip(('x', 'weight', 'bias'), got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=name)
    calls.clear()
    with torch.no_grad():
        torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(conv.eval()(x), want, rtol=1e-5, atol=1e-5)
    assert calls == []


def test_dynamic_dw_kernel_generator_equals_conv_form():
    mod = DynamicDWAggregate(16, 5).eval()
    for p in mod.parameters():
        nn.init.normal_(p, std=0.2)
    x = torch.randn(3, 16, 7, 7)
    with torch.no_grad():
        conv_form = mod.expand(mod.act(mod.norm(mod.reduce(mod.pool(x))))).view(-1, 1, 5, 5)
        assert (mod.generate_weight(x) - conv_form).abs().max().item() <= 1e-6


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_i_dynamic_dw_fused_path_equals_plain_form(dtype):
    """Fused kernel generation + aggregation == conv kernels + unfold aggregation (training mode,
    BN batch statistics): outputs and every gradient.  float64 runs the pure-PyTorch path,
    float32 the compiled CPU kernels where available."""
    torch.manual_seed(0)
    mod = IDynamicDWAggregate(24, 7, group_channels=3).train().to(dtype)
    x = torch.randn(2, 24, 10, 9, requires_grad=True, dtype=dtype)
    out = mod(x)
    grads = torch.autograd.grad(out.square().sum(), [x] + list(mod.parameters()))
    plain = local_aggregate_unfold(x, mod.generate_weight(x))
    plain_grads = torch.autograd.grad(plain.square().sum(), [x] + list(mod.parameters()))
    assert (out - plain).abs().max().item() <= 1e-5
    # float32: gradients are sums of thousands of terms (BN's cancel to ~0); compare at the scale
    # of the largest gradient.
    scale = max(g.abs().max().item() for g in plain_grads)
    tol = 1e-10 if dtype == torch.float64 else 1e-6
    for a, b in zip(grads, plain_grads):
        assert (a - b).abs().max().item() <= tol * scale
    mod.eval()
    with torch.no_grad():
        assert (mod(x) - local_aggregate(x, mod.generate_weight(x))).abs().max().item() <= 1e-5
