"""The Triton backend's kernels against a pure-PyTorch reference, in Triton's CPU interpreter.

Triton's interpreter must be on before Triton is first imported (it jits its standard library
at import), so :func:`test_kernels_in_interpreter` runs this file again in a subprocess with
``TRITON_INTERPRET=1``: the environment variable never reaches other test modules.  There,
every kernel (forward and all backward outputs) is compared with a tiny ``F.pad`` + slicing
loop below, differentiated by autograd, on odd sizes (5x7, 13x11), k = 3, 7, 12 (even: pad
(k-1)//2 before, k//2 after) and 13, one and several groups, shared weights, float32 and
bfloat16; adjoint identities check the transposes independently of autograd.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('triton', reason='the Triton backend needs the triton package')

from mmdwnet.ops.backends import triton as backend  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
N, C, H, W = 2, 4, 5, 7
KERNEL_SIZES = (3, 7, 12, 13)
# bfloat16 keeps 8 mantissa bits: outputs are rounded once after float32 accumulation.
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}
interpreted = pytest.mark.skipif(
    not backend.interpreting(),
    reason='runs in the TRITON_INTERPRET=1 subprocess of test_kernels_in_interpreter')


@pytest.mark.skipif(backend.interpreting(), reason='already in the interpreter')
def test_kernels_in_interpreter():
    env = dict(os.environ, TRITON_INTERPRET='1')
    proc = subprocess.run([sys.executable, '-m', 'pytest', __file__, '-q', '-x',
                           '-p', 'no:cacheprovider'], env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert ' passed' in proc.stdout and 'failed' not in proc.stdout, proc.stdout[-3000:]


# ---------------------------------------------------------------------------- reference
def windows(x, k):
    """(i, j, x[..., h + i - (k-1)//2, w + j - (k-1)//2]) for every offset, zero padding."""
    h, w = x.shape[-2:]
    xp = F.pad(x, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2))
    for i in range(k):
        for j in range(k):
            yield i, j, xp[..., i:i + h, j:j + w]


def ref_aggregate(x, w):
    n, c, h, wd = x.shape
    g, k = w.shape[1], w.shape[2]
    xg = x.reshape(n, g, c // g, h, wd)
    out = sum(s * w[:, :, i, j].unsqueeze(2) for i, j, s in windows(xg, k))
    return out.reshape(n, c, h, wd)


def ref_correlate(q, x, groups, k):
    n, c, h, w = q.shape
    qg, xg = q.reshape(n, groups, c // groups, h, w), x.reshape(n, groups, c // groups, h, w)
    out = q.new_zeros(n, groups, k, k, h, w)
    for i, j, s in windows(xg, k):
        out[:, :, i, j] = (qg * s).sum(2)
    return out


def ref_pointwise(x, feat, w2d, bias, groups, k):
    kern = torch.einsum('or,nrhw->nohw', w2d, feat)
    if bias is not None:
        kern = kern + bias.view(1, -1, 1, 1)
    return ref_aggregate(x, kern.reshape(x.shape[0], groups, k, k, *x.shape[2:]))


def ref_depthwise(x, kernels, bias):
    out = ref_aggregate(x, kernels[..., None, None].expand(*kernels.shape, *x.shape[2:]))
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def ref_grads(fn, inputs, grad):
    """Output and gradients of ``fn`` (float32 autograd) w.r.t. each tensor input."""
    leaves = [None if t is None else t.detach().float().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(grad.float())
    return out.detach(), [None if t is None else t.grad for t in leaves]


def randn(*shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape) * scale).to(dtype)


def check(actual, expected, dtype):
    assert actual.dtype == dtype
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual.float(), expected.float(), **TOL[dtype])


def check_all(actual, expected, dtype):
    """``check`` for each pair of gradients; ``None`` (no bias) must stay ``None``."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        if e is None:
            assert a is None
        else:
            check(a, e, dtype)


# ---------------------------------------------------------------------------- the kernels
@interpreted
@pytest.mark.parametrize('k', KERNEL_SIZES)
@pytest.mark.parametrize('groups,dtype', [(1, torch.float32), (2, torch.float32),
                                          (2, torch.bfloat16)])
def test_aggregate_scatter_correlate(k, groups, dtype):
    torch.manual_seed(k + groups)
    x, g = randn(N, C, H, W, dtype=dtype), randn(N, C, H, W, dtype=dtype)
    for nw in (N, 1):  # per-image weights, then weights shared by the batch
        w = randn(nw, groups, k, k, H, W, dtype=dtype, scale=1 / k)
        out, (gx, gw) = ref_grads(ref_aggregate, (x, w), g)
        check(backend.aggregate(x, w, k), out, dtype)
        check(backend.scatter(g, w, k), gx, dtype)
        if nw == N:  # the per-image weight gradient; shared weights sum it over images
            check(backend.correlate(g, x, groups, k), gw, dtype)
            check(backend.correlate(g, x, groups, k), ref_correlate(g.float(), x.float(),
                                                                     groups, k), dtype)


@interpreted
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('k,groups,bias', [(3, 2, True), (7, 1, True), (12, 2, False),
                                           (13, 4, True)])
def test_aggregate_pointwise(k, groups, bias, dtype):
    torch.manual_seed(k)
    r = 3
    x, g = randn(N, C, H, W, dtype=dtype), randn(N, C, H, W, dtype=dtype)
    feat = randn(N, r, H, W, dtype=dtype)
    w2d = randn(groups * k * k, r, dtype=dtype, scale=1 / k)
    b = randn(groups * k * k, dtype=dtype, scale=1 / k) if bias else None
    out, grads = ref_grads(lambda *t: ref_pointwise(*t, groups, k), (x, feat, w2d, b), g)
    check(backend.aggregate_pointwise(x, feat, w2d, b, groups, k), out, dtype)
    check_all(backend.aggregate_pointwise_backward(g, x, feat, w2d, b, groups, k), grads, dtype)


@interpreted
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('k,bias', [(3, True), (7, False), (12, True), (13, True)])
def test_dynamic_depthwise(k, bias, dtype):
    torch.manual_seed(k)
    x, g = randn(N, C, H, W, dtype=dtype), randn(N, C, H, W, dtype=dtype)
    kernels = randn(N, C, k, k, dtype=dtype, scale=1 / k)
    b = randn(C, dtype=dtype) if bias else None
    out, grads = ref_grads(ref_depthwise, (x, kernels, b), g)
    check(backend.dynamic_depthwise(x, kernels, b), out, dtype)
    check_all(backend.dynamic_depthwise_backward(g, x, kernels, b), grads, dtype)


@interpreted
@pytest.mark.parametrize('k', [7, 12])
def test_transposes_are_adjoint(k):
    """<aggregate(x, w), g> = <x, scatter(g, w)> = <w, correlate(g, x)> (no autograd)."""
    torch.manual_seed(0)
    groups = 2
    x, g = torch.randn(N, C, H, W), torch.randn(N, C, H, W)
    w = torch.randn(N, groups, k, k, H, W)
    lhs = (backend.aggregate(x, w, k) * g).sum()
    torch.testing.assert_close((x * backend.scatter(g, w, k)).sum(), lhs, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close((w * backend.correlate(g, x, groups, k)).sum(), lhs, rtol=1e-5,
                               atol=1e-4)


@interpreted
def test_pointwise_backward_is_the_directional_derivative():
    """Gradcheck-style, with the backend alone: for each input, <its gradient, a direction>
    equals the central difference of <aggregate_pointwise(...), g> along that direction (exact
    up to rounding: the op is linear in each input)."""
    torch.manual_seed(3)
    k, groups = 7, 2
    g = torch.randn(N, C, H, W)
    point = [torch.randn(N, C, H, W), torch.randn(N, 3, H, W),
             torch.randn(groups * k * k, 3) / k, torch.randn(groups * k * k) / k]
    grads = backend.aggregate_pointwise_backward(g, *point, groups, k)
    for i, grad in enumerate(grads):
        direction = torch.randn_like(point[i])

        def loss(t):
            moved = [p + t * direction if j == i else p for j, p in enumerate(point)]
            return (backend.aggregate_pointwise(*moved, groups, k) * g).double().sum()

        numeric = (loss(0.5) - loss(-0.5)) / 1.0
        analytic = (grad.double() * direction.double()).sum()
        torch.testing.assert_close(numeric, analytic, rtol=1e-4, atol=1e-4)


@interpreted
def test_tiles_and_strided_inputs():
    """Several pixel tiles per image (13x11 > one 64-pixel tile at k=13) and a channels-last
    input give the reference result."""
    torch.manual_seed(1)
    k, groups = 13, 2
    x = torch.randn(N, C, 13, 11).contiguous(memory_format=torch.channels_last)
    w = torch.randn(N, groups, k, k, 13, 11) / k
    torch.testing.assert_close(backend.aggregate(x, w, k), ref_aggregate(x, w), rtol=1e-5,
                               atol=1e-5)


@interpreted
def test_public_ops_dispatch_to_triton():
    """``MMDWNET_OPS_BACKEND=triton`` (here its per-thread switch) runs the public ops, autograd
    included, on this backend, with the results of the pure-PyTorch backend."""
    from mmdwnet.ops import backends, local_aggregate_pointwise, local_correlate
    from mmdwnet.ops.switches import use_ops_backend
    torch.manual_seed(2)
    x, feat = torch.randn(N, C, H, W), torch.randn(N, 3, H, W)
    w, b = torch.randn(2 * 49, 3, 1, 1) / 7, torch.randn(2 * 49) / 7
    results = {}
    for name in ('triton', 'torch'):
        inputs = [t.clone().requires_grad_() for t in (x, feat, w, b)]
        with use_ops_backend(name):
            assert backends.select('local_aggregate_pointwise', x, feat) is backends.get(name)
            out = local_aggregate_pointwise(*inputs, 2, 7)
            logits = local_correlate(inputs[0], inputs[1].repeat(1, 2, 1, 1)[:, :C], 7, 2)
            grads = torch.autograd.grad((out.square().sum() + logits.sum()), inputs)
        results[name] = (out, logits) + grads
    for a, e in zip(results['triton'], results['torch']):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------- protocol
def test_protocol_and_refusals():
    x = torch.randn(1, 2, 3, 3)
    assert backend.NAME == 'triton'
    assert not backend.supports(x.double())
    with pytest.raises(RuntimeError, match='float32/float16/bfloat16'):
        backend.aggregate(x.double(), torch.zeros(1, 1, 3, 3, 3, 3, dtype=torch.float64), 3)
    if backend.interpreting():
        assert backend.available() and backend.supports(x, None, x.half(), x.bfloat16())
    else:  # CPU tensors need the interpreter
        assert backend.available() == torch.cuda.is_available()
        assert not backend.supports(x)
        with pytest.raises(RuntimeError, match='TRITON_INTERPRET=1'):
            backend.aggregate(x, torch.zeros(1, 1, 3, 3, 3, 3), 3)


def test_import_without_triton(monkeypatch):
    """A CPU-only install without Triton imports the backend; it reports itself unavailable."""
    monkeypatch.setitem(sys.modules, 'triton', None)
    monkeypatch.setitem(sys.modules, 'triton.language', None)
    spec = importlib.util.spec_from_file_location('_triton_backend_without_triton',
                                                  backend.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = torch.randn(1, 1, 2, 2)
    assert not module.available() and not module.supports(x)
    with pytest.raises(RuntimeError, match='needs the triton package'):
        module.aggregate(x, torch.zeros(1, 1, 1, 1, 2, 2), 1)
