"""Mixed precision (issue 13.1): every op, mixer and preset runs forward and backward under CPU
autocast (bfloat16 and float16) and as a pure bfloat16 model; a few real optimiser steps of an
I-D-DWNet under CPU bfloat16 autocast keep the loss finite and change the weights.

Op policy (mmdwnet.ops.library): under CPU autocast the ops compute in float32."""
import pytest
import torch
import torch.nn.functional as F

import mmdwnet  # noqa: F401
from mmdwnet.ops import (dynamic_depthwise_conv2d, local_aggregate, local_aggregate_pointwise,
                         local_correlate)
from mmdwnet.registry import MODELS

TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
PRESETS = ['DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet', 'LocalMLPNet']
LOW = [torch.bfloat16, torch.float16]


def _ops(x, feat, pw, pb, kernels, w):
    """Every public op once; (N, C, H, W) outputs summed into one loss."""
    n, c, h, wd = x.shape
    a = local_aggregate(x, w)
    b = local_correlate(x, a, 3, 2).sum(dim=(2, 3)).repeat_interleave(c // 2, dim=1)
    d = local_aggregate_pointwise(x, feat, pw, pb, 2, 3)
    e = dynamic_depthwise_conv2d(x, kernels, None)
    return a, b, d, e


def _inputs(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, generator=gen).to(dtype).requires_grad_()

    return [t(2, 4, 5, 6), t(2, 3, 5, 6), t(18, 3, 1, 1), t(18), t(2, 4, 4, 4),
            t(2, 2, 3, 3, 5, 6)]


@pytest.mark.parametrize('dtype', LOW)
def test_ops_under_autocast(dtype):
    """Low-precision activations with float32 parameters (the autocast mix of issue 13) run;
    the ops compute in float32 and their gradients reach every input in its dtype."""
    ref = _ops(*_inputs())
    ins = _inputs()
    with torch.autocast('cpu', dtype=dtype):
        x = ins[0].to(dtype)  # activations arrive in low precision, parameters stay float32
        outs = _ops(x, ins[1].to(dtype), *ins[2:])
        loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    tol = 0.05 if dtype == torch.bfloat16 else 0.01
    for o, r in zip(outs, ref):
        assert o.dtype == torch.float32
        assert (o - r).abs().max().item() <= tol * max(1., r.abs().max().item())
    for t in ins:
        assert t.grad is not None and t.grad.dtype == t.dtype and t.grad.isfinite().all()


@pytest.mark.parametrize('backend', ['torch', 'cpu'])
def test_ops_in_pure_bfloat16(backend):
    """bfloat16 inputs without autocast: bfloat16 results close to float32 (float32
    accumulation inside; the CPU backend hands them to the reference backend)."""
    from mmdwnet.ops.switches import use_ops_backend
    with use_ops_backend(backend):
        ref = _ops(*_inputs())
        ins = _inputs(torch.bfloat16)
        outs = _ops(*ins)
        sum(o.float().square().mean() for o in outs).backward()
    for o, r in zip(outs, ref):
        assert o.dtype == torch.bfloat16
        assert (o.float() - r).abs().max().item() <= 0.05 * max(1., r.abs().max().item())
    assert all(t.grad.dtype == torch.bfloat16 and t.grad.isfinite().all() for t in ins)


# windowed mixers: windows that fit the 4x4 .. 1x1 maps of a 32-pixel input
MIXER = dict(SwinNet=dict(window_size=1), LocalMLPNet=dict(window_size=1))


def _build(preset):
    torch.manual_seed(0)
    return MODELS.build(dict(type=preset, arch=TINY, img_size=32, drop_path_rate=0.1,
                             mixer=MIXER.get(preset)))


@pytest.mark.parametrize('preset', PRESETS)
def test_presets_forward_backward_in_low_precision(preset):
    model = _build(preset).train()
    x = torch.randn(2, 3, 32, 32)
    for dtype in LOW:  # autocast: float32 parameters, low-precision compute
        with torch.autocast('cpu', dtype=dtype):
            loss = sum(o.float().square().mean() for o in model(x))
        loss.backward()
        assert loss.isfinite()
        assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters()
                   if p.requires_grad), dtype
        model.zero_grad()
    model = model.to(torch.bfloat16)  # a pure bfloat16 model
    outs = model(x.to(torch.bfloat16))
    assert all(o.dtype == torch.bfloat16 for o in outs)
    sum(o.float().square().mean() for o in outs).backward()
    assert all(p.grad.dtype == torch.bfloat16 and p.grad.isfinite().all()
               for p in model.parameters() if p.grad is not None)


def test_i_dynamic_dwnet_trains_under_cpu_bfloat16_autocast():
    """A few real AdamW steps of a small I-D-DWNet classifier under CPU bfloat16 autocast
    (no loss scaling, which bfloat16 does not need): finite losses, weights move, and the loss
    on the fixed batch goes down."""
    torch.manual_seed(0)
    backbone = _build('IDynamicDWNet')
    head = torch.nn.Linear(128, 4)
    params = list(backbone.parameters()) + list(head.parameters())
    optim = torch.optim.AdamW(params, lr=1e-2)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in params]
    losses = []
    for _ in range(4):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            logits = head(backbone(x)[-1].mean((2, 3)))
            loss = F.cross_entropy(logits.float(), y)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    moved = [not torch.equal(a, p.detach()) for a, p in zip(before, params)]
    assert sum(moved) >= 0.9 * len(moved)
