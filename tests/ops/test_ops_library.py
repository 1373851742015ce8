"""The torch.library registration of the mmdwnet ops (opcheck: schema, fake tensors, autograd,
AOT dispatch with dynamic shapes) and every backend against independent references: forward
and both gradients, odd sizes, odd and even kernels, groups, shared weights, FLOP handles."""
import pytest
import torch
import torch.nn.functional as F

import mmdwnet  # noqa: F401  (registers the FLOP handles)
from mmdwnet.ops import (dynamic_depthwise_conv2d, local_aggregate, local_aggregate_pointwise,
                         local_correlate)
from mmdwnet.ops import backends
from mmdwnet.ops.backends import cpu, reference
from mmdwnet.ops.backends.reference import local_aggregate_loop
from mmdwnet.ops.switches import use_ops_backend

BACKENDS = ['torch', 'cpu']


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == 'cpu' and not cpu.available():
        pytest.skip('compiled CPU kernels unavailable (no C compiler)')
    with use_ops_backend(request.param):
        yield request.param


def _t(*shape, grad=True, seed=[0]):
    seed[0] += 1
    gen = torch.Generator().manual_seed(seed[0])
    return torch.randn(*shape, generator=gen).requires_grad_(grad)


def _samples():
    """(op, args) with small odd sizes, one per registered op (even k on some)."""
    ops = torch.ops.mmdwnet
    x, g = _t(2, 6, 5, 4), _t(2, 6, 5, 4, grad=False)
    return {
        'local_aggregate': (ops.local_aggregate, (x, _t(2, 3, 3, 3, 5, 4))),
        'local_aggregate_shared_even': (ops.local_aggregate, (x, _t(1, 2, 4, 4, 5, 4))),
        'local_scatter': (ops.local_scatter, (g, _t(2, 3, 2, 2, 5, 4))),
        'local_correlate': (ops.local_correlate, (x, _t(2, 6, 5, 4), 3, 3)),
        'local_aggregate_pointwise': (ops.local_aggregate_pointwise,
                                      (x, _t(2, 4, 5, 4), _t(18, 4, 1, 1), _t(18), 2, 3)),
        'local_aggregate_pointwise_backward': (
            ops.local_aggregate_pointwise_backward,
            (g, x.detach(), _t(2, 4, 5, 4, grad=False), _t(8, 4, 1, 1, grad=False), None, 2, 2)),
        'dynamic_depthwise_conv2d': (ops.dynamic_depthwise_conv2d, (x, _t(2, 6, 3, 3), _t(6))),
        'dynamic_depthwise_conv2d_even': (ops.dynamic_depthwise_conv2d,
                                          (x, _t(2, 6, 4, 4), None)),
        'dynamic_depthwise_conv2d_backward': (
            ops.dynamic_depthwise_conv2d_backward,
            (g, x.detach(), _t(2, 6, 3, 3, grad=False), _t(6, grad=False))),
    }


@pytest.mark.parametrize('name', list(_samples()))
def test_opcheck(name, backend):
    op, args = _samples()[name]
    torch.library.opcheck(op, args)


# ------------------------------------------------------------------ independent references
def _same_pad(x, k):
    return F.pad(x, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2))


def _correlate_ref(q, km, k, g):
    n, c, h, w = q.shape
    cols = F.unfold(_same_pad(km, k), k).view(n, g, c // g, k, k, h, w)
    return (q.view(n, g, c // g, 1, 1, h, w) * cols).sum(2)


def _ddw_ref(x, kernels, bias):
    """Per-image depth-wise conv with PyTorch's padding='same'."""
    c = x.shape[1]
    return torch.cat([F.conv2d(x[i:i + 1], kernels[i].unsqueeze(1), bias, padding='same',
                               groups=c) for i in range(x.shape[0])])


def _check(fn, ref, inputs, tol=1e-4):
    """Outputs and gradients of every input of ``fn`` equal those of ``ref`` (float64)."""
    ins = [t.detach().clone().requires_grad_() if t is not None else None for t in inputs]
    ins64 = [t.detach().double().requires_grad_() if t is not None else None for t in inputs]
    out, exp = fn(*ins), ref(*ins64)
    assert out.dtype == torch.float32 and out.shape == exp.shape
    scale = max(1., exp.abs().max().item())
    assert (out.double() - exp).abs().max().item() <= tol * scale
    gen = torch.Generator().manual_seed(9)
    grad = torch.randn(exp.shape, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad(out, [t for t in ins if t is not None], grad.float())
    want = torch.autograd.grad(exp, [t for t in ins64 if t is not None], grad)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert (a.double() - b).abs().max().item() <= tol * max(1., b.abs().max().item())


# (N, C, H, W, k, G, shared weights): odd sizes, odd and even k, groups, N=1 shared weights
CASES = [(2, 6, 5, 7, 3, 3, False), (2, 4, 6, 5, 4, 2, True), (1, 6, 7, 4, 2, 6, False),
         (2, 4, 3, 5, 5, 1, True)]


@pytest.mark.parametrize('case', CASES)
def test_backends_equal_references(case, backend):
    n, c, h, w, k, g, shared = case
    x, km = _t(n, c, h, w), _t(n, c, h, w)
    wt = _t(1 if shared else n, g, k, k, h, w)
    _check(local_aggregate, local_aggregate_loop, [x, wt])
    _check(lambda a, b: local_correlate(a, b, k, g), lambda a, b: _correlate_ref(a, b, k, g),
           [x, km])
    r = 3
    feat, pw, pb = _t(n, r, h, w), _t(g * k * k, r, 1, 1), _t(g * k * k)
    for bias in (pb, None):
        _check(lambda a, f, wgt, *b: local_aggregate_pointwise(a, f, wgt, b[0] if b else None,
                                                               g, k),
               lambda a, f, wgt, *b: local_aggregate_loop(a, F.conv2d(
                   f, wgt, b[0] if b else None).view(n, g, k, k, h, w)),
               [x, feat, pw] + ([bias] if bias is not None else []))
    kernels, dbias = _t(n, c, k, k), _t(c)
    _check(dynamic_depthwise_conv2d, _ddw_ref, [x, kernels, dbias])
    _check(lambda a, kk: dynamic_depthwise_conv2d(a, kk), lambda a, kk: _ddw_ref(a, kk, None),
           [x, kernels])


def test_channels_last_and_strided_inputs(backend):
    x, wt = _t(2, 8, 6, 5, grad=False), _t(2, 4, 3, 3, 6, 5, grad=False)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(local_aggregate(x_cl, wt), local_aggregate(x, wt), atol=1e-6)
    kernels = _t(2, 8, 3, 3, grad=False)
    out = dynamic_depthwise_conv2d(x_cl, kernels)
    assert out.is_contiguous(memory_format=torch.channels_last)  # as the fake impl says
    assert dynamic_depthwise_conv2d(x, kernels).is_contiguous()
    assert torch.allclose(out, _ddw_ref(x, kernels, None), atol=1e-5)


def test_double_backward_through_the_same_ops():
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randn(1, 4, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
            for _ in range(2))
    wt = torch.randn(1, 2, 3, 3, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(local_aggregate, (x, wt))
    assert torch.autograd.gradgradcheck(lambda a, b: local_correlate(a, b, 2, 2), (x, y))


def test_empty_batch(backend):
    x = torch.zeros(0, 4, 5, 5)
    assert local_aggregate(x, torch.zeros(0, 2, 3, 3, 5, 5)).shape == (0, 4, 5, 5)
    assert local_correlate(x, x, 3, 2).shape == (0, 2, 3, 3, 5, 5)
    out = local_aggregate_pointwise(x, torch.zeros(0, 2, 5, 5), torch.zeros(18, 2, 1, 1), None,
                                    2, 3)
    assert out.shape == (0, 4, 5, 5)


def test_one_traced_node_per_op_with_flops():
    """torch.jit.trace (what FLOP counters read) sees each op as one mmdwnet:: node, and
    mmengine's analyzer counts it with the handles registered on ``import mmdwnet``."""
    from mmengine.analysis import FlopAnalyzer

    class Net(torch.nn.Module):

        def forward(self, x, w, feat, pw, kernels):
            a = local_aggregate(x, w)
            b = local_correlate(x, a, 3, 2)
            c = local_aggregate_pointwise(x, feat, pw, None, 2, 3)
            d = dynamic_depthwise_conv2d(x, kernels)
            return a, b, c, d

    n, c, h, w = 2, 4, 5, 6
    inputs = (torch.randn(n, c, h, w), torch.randn(n, 2, 3, 3, h, w), torch.randn(n, 3, h, w),
              torch.randn(18, 3, 1, 1), torch.randn(n, c, 5, 5))
    graph = torch.jit.trace(Net(), inputs).graph
    kinds = [node.kind() for node in graph.nodes() if node.kind().startswith('mmdwnet::')]
    assert kinds == ['mmdwnet::local_aggregate', 'mmdwnet::local_correlate',
                     'mmdwnet::local_aggregate_pointwise', 'mmdwnet::dynamic_depthwise_conv2d']
    from mmdwnet.analysis.complexity import register_handles
    register_handles()  # explicit: import mmdwnet leaves mmengine's handle table alone
    flops = FlopAnalyzer(Net(), inputs).by_operator()  # keys without the namespace
    assert flops['local_aggregate'] == n * c * h * w * 9
    assert flops['local_correlate'] == n * c * h * w * 9
    assert flops['local_aggregate_pointwise'] == n * h * w * 3 * 18 + n * c * h * w * 9
    assert flops['dynamic_depthwise_conv2d'] == n * c * h * w * 25
    # the 'modules' convention (what a module-hook counter sees) leaves out the products of two
    # activations and keeps only the pointwise op's 1x1 conv
    from mmdwnet.analysis import flop_analyzer
    modules = flop_analyzer(Net(), inputs, 'modules').by_operator()
    assert modules['local_aggregate_pointwise'] == n * h * w * 3 * 18
    assert modules['local_aggregate'] == modules['local_correlate'] == 0
    assert modules['dynamic_depthwise_conv2d'] == 0
    with pytest.raises(ValueError, match=r"unknown FLOP counting convention 'jit'.*'modules'"):
        flop_analyzer(Net(), inputs, 'jit')


@pytest.mark.parametrize('preset', ['IDynamicDWNet', 'DynamicDWNet', 'SlidingWindowNet'])
def test_mmengine_complexity_info_equals_get_flops(preset):
    """mmengine.analysis.get_model_complexity_info (what the toolboxes' get_flops use) counts
    the same FLOPs as tools/analysis_tools/get_flops.py (count_flops)."""
    from mmengine.analysis import get_model_complexity_info

    from mmdwnet.analysis import count_flops
    from mmdwnet.analysis.complexity import register_handles
    from mmdwnet.registry import MODELS
    register_handles()  # explicit: import mmdwnet leaves mmengine's handle table alone
    model = MODELS.build(dict(type=preset, arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                                                      num_heads=[1, 2, 4, 8]))).eval()
    ours = count_flops(model, (3, 64, 64))
    info = get_model_complexity_info(model, (3, 64, 64), show_table=False, show_arch=False)
    assert info['flops'] == ours > 0


def test_backend_selection_and_errors(monkeypatch):
    from mmdwnet.ops.backends import select
    x = torch.zeros(1, 2, 3, 3)
    ref = backends.get('reference')
    assert ref is reference.BACKEND and backends.get('torch') is ref  # the old name: an alias
    with use_ops_backend('torch'):
        assert select('local_aggregate', x) is ref
    with use_ops_backend('cpu'):  # a dtype the backend does not take runs on the reference
        assert select('local_aggregate', x.double()) is ref
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    with use_ops_backend('triton'), pytest.raises(RuntimeError, match='TRITON_INTERPRET=1'):
        local_aggregate(x, torch.zeros(1, 1, 3, 3, 3, 3))
    # set after Triton was imported, the variable does not switch the interpreter on: still an
    # error, never a silent run on the reference backend
    triton_backend = backends.get('triton')
    if triton_backend is not None and not triton_backend.interpreting():
        monkeypatch.setenv('TRITON_INTERPRET', '1')
        with use_ops_backend('triton'), pytest.raises(RuntimeError, match='before Python starts'):
            local_aggregate(x, torch.zeros(1, 1, 3, 3, 3, 3))
    with pytest.raises(ValueError, match='kernel_size must be an int >= 1'):
        local_aggregate_pointwise(x, x, torch.zeros(0, 2, 1, 1), None, 1, 0)
    with pytest.raises(ValueError, match='bias'):
        dynamic_depthwise_conv2d(x, torch.zeros(1, 2, 3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match=r'4-D tensor \(N, C, H, W\)'):
        local_aggregate(x[0], torch.zeros(1, 1, 3, 3, 3, 3))


def test_workspace_is_bounded_and_released():
    """A request above the cap gets a one-off tensor and drops the cached buffer (14.3)."""
    from mmdwnet.ops.backends import _common
    _common.release_workspace()
    small = _common.workspace((4, 1000), torch.zeros(1))
    assert _common.workspace_bytes() == small.numel() * 4
    big_numel = _common.WORKSPACE_CAP_BYTES // 4 + 1
    big = _common.workspace((big_numel, ), torch.zeros(1))
    assert big.numel() == big_numel and _common.workspace_bytes() == 0
    del big
    # through the op: a large I-D-DW input leaves at most the cap cached
    x = torch.randn(1, 12, 180, 180)
    with use_ops_backend('torch'):
        local_aggregate_pointwise(x, torch.randn(1, 2, 180, 180), torch.randn(12 * 49, 2, 1, 1),
                                  None, 12, 7)  # 588 * 180 * 180 * 4 B = 76 MB of kernels
    assert _common.workspace_bytes() <= _common.WORKSPACE_CAP_BYTES
    _common.release_workspace()
    assert _common.workspace_bytes() == 0
