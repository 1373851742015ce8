"""Issue 3: the paper's structural claims about the mixers, measured numerically.

The "aggregation" of a mixer is its spatial mixing with the aggregation weights held fixed
(the 1x1 projections are excluded, as in the paper's Table 1).
"""
import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import jacobian

from mmdwnet.models import (DWConv, DynamicDWConv, IDynamicDWConv, LocalMLP,
                            ShiftedWindowAttention, SlidingWindowAttention)
from mmdwnet.models.mixers.attention import outside_neighbours
from mmdwnet.ops import local_aggregate, local_correlate
from mmdwnet.ops.backends.reference import local_aggregate_unfold

C, H, W, K = 8, 10, 10, 3


def _aggregation(name, seed=0):
    """(fn, weights) where fn(x_nchw) aggregates with weights computed once from a random x."""
    torch.manual_seed(seed)
    x0 = torch.randn(1, C, H, W)
    if name == 'dw':
        m = DWConv(C, kernel_size=K).aggregate
        return m, m.weight
    if name == 'ddw':
        m = DynamicDWConv(C, kernel_size=K).eval().aggregate
        w = m.generate_weight(x0).detach()
        return (lambda x: F.conv2d(x, w, m.bias, padding=K // 2, groups=C)), w
    if name == 'iddw':
        m = IDynamicDWConv(C, kernel_size=K, group_channels=2).eval().aggregate
        w = m.generate_weight(x0).detach()
        return (lambda x: local_aggregate(x, w)), w
    if name == 'sliding':
        m = SlidingWindowAttention(C, num_heads=2, kernel_size=K)
        attn, _ = m.attention_weights(x0.permute(0, 2, 3, 1))
        attn = attn.detach()
        return (lambda x: local_aggregate(x, attn)), attn
    raise KeyError(name)


def _jac(fn):
    x = torch.randn(1, C, H, W, dtype=torch.float32)
    return jacobian(fn, x).reshape(C, H, W, C, H, W)


@pytest.mark.parametrize('name', ['dw', 'ddw', 'iddw', 'sliding'])
def test_aggregation_has_no_cross_channel_and_is_local(name):
    fn, _ = _aggregation(name)
    j = _jac(fn)
    eye = torch.eye(C).view(C, 1, 1, C, 1, 1).bool()
    assert j.masked_select(~eye.expand_as(j)).abs().max() == 0  # sparse between channels
    assert j.masked_select(eye.expand_as(j)).abs().max() > 0
    ys = torch.arange(H)
    far = (ys.view(H, 1, 1, 1) - ys.view(1, 1, H, 1)).abs() > K // 2  # |dy| > k//2
    jj = j.diagonal(dim1=0, dim2=3)  # H, W, H, W, C
    assert jj[far.expand(H, W, H, W)].abs().max() == 0  # output depends only on the k x k
    near = (ys.view(H, 1, 1, 1) - ys.view(1, 1, H, 1)).abs() == K // 2
    assert jj[near.expand(H, W, H, W)].abs().max() > 0  # ... and on all of it


def test_dwconv_is_translation_equivariant():
    m = DWConv(C, kernel_size=K).eval()
    x = torch.randn(1, 16, 16, C)
    shifted = torch.roll(x, shifts=(3, 2), dims=(1, 2))
    a = torch.roll(m(x), shifts=(3, 2), dims=(1, 2))
    b = m(shifted)
    inner = (slice(None), slice(3 + K, -K), slice(2 + K, -K))  # away from borders and wrap
    assert torch.allclose(a[inner], b[inner], atol=1e-5)


@pytest.mark.parametrize('mixer', ['attention', 'local_mlp'])
def test_window_mixers_are_equivariant_to_whole_window_shifts_only(mixer):
    torch.manual_seed(0)
    if mixer == 'attention':
        m = ShiftedWindowAttention(C, num_heads=2, window_size=7)
    else:
        m = LocalMLP(C, num_heads=2, window_size=7)
    x = torch.randn(1, 28, 28, C)
    out = m(x)
    for shift, equal in ((7, True), (1, False)):
        a = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        b = m(torch.roll(x, shifts=(shift, shift), dims=(1, 2)))
        assert torch.allclose(a, b, atol=1e-5) == equal, shift


def test_window_attention_output_depends_only_on_its_window():
    m = ShiftedWindowAttention(C, num_heads=2, window_size=7)
    x = torch.randn(1, 14, 14, C, requires_grad=True)
    m(x)[0, 2, 3].sum().backward()  # a position in the top-left window
    grad = x.grad[0].abs().sum(-1)
    assert grad[:7, :7].min() > 0 and grad[7:].max() == 0 and grad[:, 7:].max() == 0


def test_shifted_windows_connect_across_window_borders():
    m = ShiftedWindowAttention(C, num_heads=2, window_size=7, shift=True)
    x = torch.randn(1, 14, 14, C, requires_grad=True)
    m(x)[0, 6, 6].sum().backward()
    assert x.grad[0, 7, 7].abs().sum() > 0


def test_static_mixers_do_not_depend_on_the_input():
    """Static aggregation weights make the whole mixer affine (before BN/ReLU) in x."""
    torch.manual_seed(0)
    local_mlp = LocalMLP(C, num_heads=2, window_size=7)
    x1, x2 = torch.randn(2, 1, 14, 14, C)
    zero = local_mlp(torch.zeros_like(x1))
    lhs = local_mlp(x1 + x2) - zero
    rhs = (local_mlp(x1) - zero) + (local_mlp(x2) - zero)
    assert torch.allclose(lhs, rhs, atol=1e-5)
    dw = DWConv(C, kernel_size=K).aggregate
    y1, y2 = x1.permute(0, 3, 1, 2), x2.permute(0, 3, 1, 2)
    b = dw.bias.view(1, -1, 1, 1)
    assert torch.allclose(dw(y1 + y2) - b, (dw(y1) - b) + (dw(y2) - b), atol=1e-5)


def test_dynamic_mixers_depend_on_the_input():
    torch.manual_seed(0)
    x1, x2 = torch.randn(2, 2, 14, 14, C)
    ddw = DynamicDWConv(C, kernel_size=K).eval().aggregate
    iddw = IDynamicDWConv(C, kernel_size=K, group_channels=2).eval().aggregate
    attn = ShiftedWindowAttention(C, num_heads=2, window_size=7)
    slide = SlidingWindowAttention(C, num_heads=2, kernel_size=K)
    n1, n2 = x1.permute(0, 3, 1, 2), x2.permute(0, 3, 1, 2)
    assert not torch.allclose(ddw.generate_weight(n1), ddw.generate_weight(n2))
    assert not torch.allclose(iddw.generate_weight(n1), iddw.generate_weight(n2))
    geo = attn.geometry(x1)
    assert not torch.allclose(attn.attention_weights(geo.partition(x1), None)[0],
                              attn.attention_weights(geo.partition(x2), None)[0])
    assert not torch.allclose(slide.attention_weights(x1)[0], slide.attention_weights(x2)[0])
    # D-DW shares one kernel across positions; I-D-DW has one per position
    w = iddw.generate_weight(n1)
    assert not torch.allclose(w[..., 0, 0], w[..., 5, 5])


def test_sliding_attention_is_translation_equivariant_in_the_interior():
    m = SlidingWindowAttention(C, num_heads=2, kernel_size=K)
    x = torch.randn(1, 16, 16, C)
    a = torch.roll(m(x), shifts=(1, 1), dims=(1, 2))
    b = m(torch.roll(x, shifts=(1, 1), dims=(1, 2)))
    inner = (slice(None), slice(K + 1, -K), slice(K + 1, -K))
    assert torch.allclose(a[inner], b[inner], atol=1e-5)


@pytest.mark.parametrize('k', [1, 3, 5, 7])
@pytest.mark.parametrize('hw', [(1, 1), (2, 3), (6, 9), (11, 4)])
def test_outside_neighbours_is_the_correlation_of_ones(k, hw):
    """The sliding-window mask built from index comparisons (standard ops, also in ONNX) is
    exactly which neighbours a zero-padded k x k correlation of a map of ones misses, maps
    smaller than the kernel included."""
    ones = torch.ones(1, 1, *hw)
    want = local_correlate(ones, ones, k, 1) == 0
    got = outside_neighbours(*hw, k)
    assert got.dtype == torch.bool and got.shape == want.shape == (1, 1, k, k, *hw)
    assert torch.equal(got, want)


def test_local_aggregate_gradcheck_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 3, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(local_aggregate, (x, w))
    shared = torch.randn(1, 3, 3, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(local_aggregate, (x, shared))
    q = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: local_correlate(a, b, 3, 3), (q, x))


def test_local_aggregate_matches_the_unfold_formulation_and_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 9, 11)
    w = torch.randn(2, 4, 5, 5, 9, 11)
    out = local_aggregate(x, w)
    assert torch.allclose(out, local_aggregate_unfold(x, w), atol=1e-5)
    # the README formula at one position, by hand
    n, c, h, wd = 1, 5, 0, 10
    g = c // 2
    xp = F.pad(x, (2, 2, 2, 2))
    manual = sum(w[n, g, i, j, h, wd] * xp[n, c, h + i, wd + j] for i in range(5) for j in range(5))
    assert torch.isclose(out[n, c, h, wd], manual, atol=1e-5)


def test_local_aggregate_rejects_bad_shapes():
    with pytest.raises(ValueError, match='square kernel'):
        local_aggregate(torch.randn(1, 4, 5, 5), torch.randn(1, 2, 4, 3, 5, 5))
    with pytest.raises(ValueError, match='does not match input'):
        local_aggregate(torch.randn(1, 4, 5, 5), torch.randn(1, 2, 3, 3, 6, 5))
    with pytest.raises(ValueError, match='cannot be split into 3'):
        local_aggregate(torch.randn(1, 4, 5, 5), torch.randn(1, 3, 3, 3, 5, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device on this machine')
def test_local_aggregate_on_cuda_matches_cpu():
    x = torch.randn(2, 8, 9, 11)
    w = torch.randn(2, 4, 5, 5, 9, 11)
    assert torch.allclose(local_aggregate(x.cuda(), w.cuda()).cpu(), local_aggregate(x, w),
                          atol=1e-5)
