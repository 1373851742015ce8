"""The fast local aggregation ops equal straightforward references, forward and backward."""
import os

import pytest
import torch
import torch.nn.functional as F

from mmdwnet.ops import local_aggregate, local_aggregate_pointwise, local_correlate
from mmdwnet.ops.backends import cpu as cpu_kernels
from mmdwnet.ops.backends import select
from mmdwnet.ops.backends.reference import local_aggregate_loop, local_aggregate_unfold

# (N, C, H, W, k, G, shared weights)
CASES = [(2, 12, 9, 7, 3, 4, False), (2, 12, 5, 6, 7, 3, False), (3, 8, 6, 6, 5, 2, True),
         (1, 4, 3, 3, 7, 4, False), (2, 6, 8, 5, 1, 2, False), (2, 16, 14, 14, 7, 8, False)]
BACKENDS = ['auto', 'torch']


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """'auto': compiled CPU kernels where they build; 'torch': the pure-PyTorch path."""
    if request.param == 'auto' and not cpu_kernels.available():
        pytest.skip('compiled CPU kernels unavailable (no C compiler); torch path tested')
    monkeypatch.setenv('MMDWNET_OPS_BACKEND', request.param)
    return request.param


def _inputs(n, c, h, w, k, g, shared, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    wt = torch.randn(1 if shared else n, g, k, k, h, w, generator=gen, dtype=dtype)
    grad = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    return x, wt, grad


def _value_and_grads(fn, x, wt, grad):
    x, wt = x.clone().requires_grad_(), wt.clone().requires_grad_()
    out = fn(x, wt)
    return (out, ) + torch.autograd.grad(out, (x, wt), grad)


@pytest.mark.parametrize('case', CASES)
def test_local_aggregate_matches_references(case, backend):
    x, wt, grad = _inputs(*case)
    ours = _value_and_grads(local_aggregate, x, wt, grad)
    ref64 = _value_and_grads(local_aggregate_loop, x.double(), wt.double(), grad.double())
    unfold = _value_and_grads(local_aggregate_unfold, x, wt, grad)
    for a, b, u in zip(ours, ref64, unfold):
        assert a.dtype == torch.float32 and a.shape == b.shape
        assert (a.double() - b).abs().max().item() <= 1e-5
        assert (a - u).abs().max().item() <= 1e-5


def test_local_aggregate_float64_exact(backend):
    x, wt, grad = _inputs(2, 12, 9, 7, 5, 4, False, dtype=torch.float64)
    for a, b in zip(_value_and_grads(local_aggregate, x, wt, grad),
                    _value_and_grads(local_aggregate_unfold, x, wt, grad)):
        assert (a - b).abs().max().item() <= 1e-12


def test_local_aggregate_channels_last_input(backend):
    x, wt, grad = _inputs(2, 8, 7, 9, 3, 4, False)
    x_cl = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # NCHW view, NHWC memory
    a = local_aggregate(x_cl, wt)
    assert (a - local_aggregate_unfold(x, wt)).abs().max().item() <= 1e-5


def test_local_aggregate_stage1_shape(backend):
    """The tiny model's first stage: 8x96x56x56, k=7, 32 groups (float32, 1e-5).

    Kernels are scaled to keep outputs at unit scale (as generated kernels are); with 2.4M
    outputs of raw randn products two float32 summation orders differ by a few 1e-5.
    """
    x, wt, _ = _inputs(8, 96, 56, 56, 7, 32, False)
    wt /= 7
    with torch.no_grad():
        diff = (local_aggregate(x, wt) - local_aggregate_unfold(x, wt)).abs().max().item()
    assert diff <= 1e-5


def test_local_aggregate_detects_a_wrong_reference(backend):
    """The comparison can fail: a shifted weight gives a different output."""
    x, wt, _ = _inputs(2, 8, 7, 7, 3, 4, False)
    assert (local_aggregate(x, wt) - local_aggregate_unfold(x, wt.roll(1, 2))).abs().max() > 1e-2


@pytest.mark.parametrize('case', CASES[:4])
def test_local_correlate_matches_unfold(case, backend):
    n, c, h, w, k, g, _ = case
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    km = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    cols = F.unfold(km, k, padding=k // 2).view(n, g, c // g, k, k, h, w)
    ref = (q.view(n, g, c // g, 1, 1, h, w) * cols).sum(2)
    gl = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        qd, kd = q.detach().to(dtype).requires_grad_(), km.detach().to(dtype).requires_grad_()
        out = local_correlate(qd, kd, k, g)
        grads = torch.autograd.grad(out, (qd, kd), gl.to(dtype))
        assert (out.double() - ref).abs().max().item() <= tol
        for a, b in zip(grads, torch.autograd.grad(ref, (q, km), gl, retain_graph=True)):
            assert (a.double() - b).abs().max().item() <= tol


@pytest.mark.parametrize('bias', [True, False])
def test_local_aggregate_pointwise_matches_two_step_form(bias, backend):
    n, c, h, w, k, g, r = 3, 12, 9, 8, 5, 4, 6
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(n, c, h, w, generator=gen, requires_grad=True)
    feat = torch.randn(n, r, h, w, generator=gen, requires_grad=True)
    weight = torch.randn(g * k * k, r, 1, 1, generator=gen, requires_grad=True)
    b = torch.randn(g * k * k, generator=gen, requires_grad=True) if bias else None
    grad = torch.randn(n, c, h, w, generator=gen)
    params = [t for t in (x, feat, weight, b) if t is not None]
    ours = local_aggregate_pointwise(x, feat, weight, b, g, k)
    ref = local_aggregate_loop(x, F.conv2d(feat, weight, b).view(n, g, k, k, h, w))
    assert (ours - ref).abs().max().item() <= 1e-5
    for a, e in zip(torch.autograd.grad(ours, params, grad), torch.autograd.grad(ref, params, grad)):
        assert (a - e).abs().max().item() <= 1e-4 * max(1., e.abs().max().item())


def test_bad_inputs_raise_clear_errors():
    x = torch.zeros(2, 6, 5, 5)
    with pytest.raises(ValueError, match='square kernel'):
        local_aggregate(x, torch.zeros(2, 3, 4, 3, 5, 5))
    with pytest.raises(ValueError, match='does not match input'):
        local_aggregate(x, torch.zeros(2, 3, 3, 3, 4, 5))
    with pytest.raises(ValueError, match='cannot be split into 4 weight groups'):
        local_aggregate(x, torch.zeros(2, 4, 3, 3, 5, 5))
    with pytest.raises(ValueError, match=r'\(N, G, k, k, H, W\)'):
        local_aggregate(x, torch.zeros(2, 3, 3, 3, 5))
    with pytest.raises(ValueError, match='must be \\(G\\*k\\*k, R, 1, 1\\)'):
        local_aggregate_pointwise(x, torch.zeros(2, 4, 5, 5), torch.zeros(26, 4, 1, 1), None, 3, 3)
    with pytest.raises(ValueError, match='must be \\(N, R, H, W\\)'):
        local_aggregate_pointwise(x, torch.zeros(2, 4, 4, 5), torch.zeros(27, 4, 1, 1), None, 3, 3)
    with pytest.raises(ValueError, match='kernel_size must be an int >= 1'):
        local_correlate(x, x, 0, 3)
    with pytest.raises(ValueError, match='cannot be split into 4'):
        local_correlate(x, x, 3, 4)


def test_backend_switch(monkeypatch):
    x = torch.zeros(1, 2, 3, 3)
    op = 'local_aggregate'
    monkeypatch.setenv('MMDWNET_OPS_BACKEND', 'torch')  # an alias of 'reference'
    assert select(op, x).name == 'reference'
    monkeypatch.setenv('MMDWNET_OPS_BACKEND', 'auto')
    assert select(op, x.double()).name == 'reference'  # float32 only
    assert (select(op, x).name == 'openmp') == cpu_kernels.available()
    monkeypatch.setenv('MMDWNET_OPS_BACKEND', 'cpu')  # an alias of 'openmp'
    assert (select(op, x).name == 'openmp') == cpu_kernels.available()
    monkeypatch.setenv('MMDWNET_OPS_BACKEND', 'triton')
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    with pytest.raises(RuntimeError, match='TRITON_INTERPRET=1'):
        select(op, x)
    monkeypatch.setenv('MMDWNET_OPS_BACKEND', 'bogus')
    with pytest.raises(ValueError, match='not a known ops backend'):
        local_aggregate(x, torch.zeros(1, 1, 3, 3, 3, 3))


def test_kernel_library_is_cached(tmp_path, monkeypatch):
    import shutil
    if shutil.which('gcc') is None and shutil.which('cc') is None:
        pytest.skip('no C compiler on this machine')
    monkeypatch.setenv('MMDWNET_OPS_CACHE', str(tmp_path))
    path = cpu_kernels.build()
    assert path is not None and path.startswith(str(tmp_path))
    mtime = os.stat(path).st_mtime_ns
    assert cpu_kernels.build() == path
    assert os.stat(path).st_mtime_ns == mtime


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='no CUDA device on this machine: the CUDA dispatch (the same pure '
                    'PyTorch code on CUDA tensors) is tested only where a GPU exists')
def test_cuda_matches_cpu():
    x, wt, grad = _inputs(2, 16, 14, 14, 7, 8, False)
    cpu = _value_and_grads(local_aggregate, x, wt, grad)
    cuda = _value_and_grads(local_aggregate, x.cuda(), wt.cuda(), grad.cuda())
    for a, b in zip(cpu, cuda):
        assert b.is_cuda and (a - b.cpu()).abs().max().item() <= 1e-5
    q, km = x.clone(), torch.randn_like(x)
    assert (local_correlate(q, km, 7, 8) -
            local_correlate(q.cuda(), km.cuda(), 7, 8).cpu()).abs().max().item() <= 1e-5


@pytest.mark.parametrize('with_bias', [True, False])
def test_dynamic_depthwise_conv2d_matches_per_image_conv(with_bias, backend):
    from mmdwnet.ops import dynamic_depthwise_conv2d
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 6, 9, 8, generator=gen, requires_grad=True)
    kernels = torch.randn(3, 6, 5, 5, generator=gen, requires_grad=True)
    bias = torch.randn(6, generator=gen, requires_grad=True) if with_bias else None
    ref = torch.cat([F.conv2d(x[i:i + 1], kernels[i].unsqueeze(1), bias, padding=2, groups=6)
                     for i in range(3)])
    out = dynamic_depthwise_conv2d(x, kernels, bias)  # grad path: one grouped conv
    assert (out - ref).abs().max().item() <= 1e-5
    params = [t for t in (x, kernels, bias) if t is not None]
    g = torch.randn(ref.shape, generator=gen)
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        assert (a - b).abs().max().item() <= 1e-4
    with torch.no_grad():  # inference path (compiled kernel on CPU float32 with 'auto')
        x_cl = x.contiguous(memory_format=torch.channels_last)
        assert (dynamic_depthwise_conv2d(x_cl, kernels, bias) - ref).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match=r'must be \(N, C, k, k\)'):
        dynamic_depthwise_conv2d(x, kernels[:, :, :4, :], bias)


@pytest.mark.parametrize('shape', [(2, 32, 11, 13, 7), (1, 40, 6, 17, 4), (2, 16, 3, 3, 7),
                                   (1, 48, 9, 10, 3)])
@pytest.mark.parametrize('with_bias', [True, False])
def test_compiled_dynamic_depthwise_vector_paths(shape, with_bias):
    """The compiled D-DW kernel's vector paths (16 channels a block; 4 pixels sharing each
    weight load away from the left / right border; one pixel at the borders) and its scalar
    channel tail (C not a multiple of 16), odd and even k, against per-image convs."""
    from mmdwnet.ops.backends import cpu
    from mmdwnet.models.mixers.dwconv import same_padding
    if not cpu.available():
        pytest.skip('the compiled CPU kernels are not available (no C compiler)')
    n, c, h, w, k = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
    kernels = torch.randn(n, c, k, k, generator=gen)
    bias = torch.randn(c, generator=gen) if with_bias else None
    ref = torch.cat([F.conv2d(F.pad(x[i:i + 1], same_padding(k)), kernels[i].unsqueeze(1), bias,
                              groups=c) for i in range(n)])
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = cpu.dynamic_depthwise(x, kernels, bias)
            assert out.shape == ref.shape and (out - ref).abs().max().item() <= 1e-4
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize('shape', [(2, 32, 11, 13, 7), (1, 40, 6, 17, 5), (2, 16, 3, 3, 7),
                                   (1, 48, 9, 10, 3), (2, 24, 5, 21, 9), (1, 32, 8, 8, 4)])
@pytest.mark.parametrize('with_bias', [True, False])
def test_compiled_dynamic_depthwise_backward(shape, with_bias):
    """The compiled D-DW backward (input gradient: the forward kernel with flipped kernels;
    kernel gradient: ``mmdw_ddw_nhwc_grad_kernels``, 16 channels a block, 4 taps of a row at a
    time, columns at the edges with fewer taps, a scalar channel tail) against autograd through
    per-image convs: odd k of 3 to 9 (9 = two 4-tap chunks and one of 1), maps narrower than
    the window, an even k (the reference's gradient), 1 and 2 threads."""
    from mmdwnet.ops.backends import cpu
    from mmdwnet.models.mixers.dwconv import same_padding
    if not cpu.available():
        pytest.skip('the compiled CPU kernels are not available (no C compiler)')
    n, c, h, w, k = shape
    gen = torch.Generator().manual_seed(sum(shape) + 1)
    x = torch.randn(n, c, h, w, generator=gen)
    kernels = torch.randn(n, c, k, k, generator=gen)
    bias = torch.randn(c, generator=gen) if with_bias else None
    grad = torch.randn(n, c, h, w, generator=gen)
    leaves = [t.clone().requires_grad_() for t in (x, kernels) + ((bias, ) if with_bias else ())]
    ref = torch.cat([
        F.conv2d(F.pad(leaves[0][i:i + 1], same_padding(k)), leaves[1][i].unsqueeze(1),
                 leaves[2] if with_bias else None, groups=c) for i in range(n)])
    want = torch.autograd.grad(ref, leaves, grad)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            got = cpu.dynamic_depthwise_backward(grad, x, kernels, bias)
            for name, mine, theirs in zip(('x', 'kernels', 'bias'), got, want):
                torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4, msg=name)
            assert with_bias or got[2] is None
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------- I-D-DW op in row tiles (CPU kernels)
# (N, C, H, W, G, k, R): odd and even kernels, a kernel larger than the map, several images;
# maps so small that only the centre of the kernel reaches them (1x1, 2x2, 2x3, 3x1: the op
# generates only those taps)
TILE_CASES = [(2, 12, 9, 11, 3, 3, 4), (1, 8, 13, 7, 2, 4, 3), (3, 6, 5, 5, 6, 7, 2),
              (1, 4, 3, 3, 1, 8, 2), (2, 6, 4, 9, 3, 2, 3), (4, 8, 1, 1, 4, 7, 3),
              (3, 6, 2, 2, 3, 7, 2), (2, 4, 2, 3, 2, 9, 2), (2, 4, 3, 1, 4, 5, 2)]


def _pointwise_inputs(n, c, h, w, g, k, r, seed):
    """Random (x, feat, grad, w2d, bias) of the I-D-DW op: N x C x H x W input and gradient,
    R reduced channels, G groups of k x k taps."""
    gen = torch.Generator().manual_seed(seed)
    x, feat, grad = (torch.randn(n, ch, h, w, generator=gen) for ch in (c, r, c))
    w2d, bias = torch.randn(g * k * k, r, generator=gen), torch.randn(g * k * k, generator=gen)
    return x, feat, grad, w2d, bias


@pytest.mark.parametrize('case', TILE_CASES)
@pytest.mark.parametrize('tile_bytes', [1, 600, 1 << 30])  # one row, a few rows, whole images
def test_pointwise_row_tiles_match_reference(case, tile_bytes, monkeypatch):
    """The compiled I-D-DW op generates and aggregates its kernels a few images or a few rows at
    a time (issue #30: no full per-pixel kernel tensor); every step size gives the reference's
    forward and backward."""
    if not cpu_kernels.available():
        pytest.skip('compiled CPU kernels unavailable (no C compiler)')
    from mmdwnet.ops.spec import spec
    n, c, h, w, g, k, r = case
    x, feat, grad, w2d, bias = _pointwise_inputs(n, c, h, w, g, k, r, seed=1)
    monkeypatch.setattr(cpu_kernels, 'KERNEL_TILE_BYTES', tile_bytes)
    for b in (bias, None):
        want = spec('local_aggregate_pointwise').decomposition(x, feat, w2d, b, g, k)
        torch.testing.assert_close(cpu_kernels.aggregate_pointwise(x, feat, w2d, b, g, k), want,
                                   rtol=1e-5, atol=1e-5)
        got = cpu_kernels.aggregate_pointwise_backward(grad, x, feat, w2d, b, g, k)
        ref = spec('local_aggregate_pointwise_backward').decomposition(grad, x, feat, w2d, b, g,
                                                                       k)
        for name, mine, theirs in zip(('x', 'feat', 'weight', 'bias'), got, ref):
            if b is None and name == 'bias':
                assert mine is None
                continue
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize('case', [
    # (n, c, g, r, h, w, k): one channel a group, 4 + 2 channels a group (the 4-channel path
    # and a 2-channel rest), maps narrower than a 16-position block (blocks span rows), a partial
    # last block, an even kernel, a kernel wider than the map, a large kernel (its k*k*16
    # floats come from the caller's workspace, never the OpenMP thread's stack)
    (3, 8, 8, 4, 8, 8, 7), (2, 12, 2, 5, 5, 7, 3), (2, 6, 3, 32, 6, 3, 4), (1, 4, 2, 3, 9, 11, 9),
    (1, 2, 1, 2, 4, 37, 31),
    # 3 channels a group (the presets' first stage, G = 32 at C = 96: one 3-channel block) and
    # 4 + 3 channels
    (2, 6, 2, 5, 9, 10, 7), (1, 7, 1, 3, 6, 20, 5)])
@pytest.mark.parametrize('threads', [1, 2])
def test_fused_pointwise_forward_equals_the_unfused_and_the_spec(case, threads, monkeypatch):
    """The fused I-D-DW forward (kernels generated inside the aggregation kernel, 16 positions
    at a time) against the unfused steps (MKL product + row aggregation) and the spec's
    standard-op decomposition, with and without bias, 1 and 2 threads (each thread its own
    slice of the kernel workspace)."""
    if not cpu_kernels.available():
        pytest.skip('compiled CPU kernels unavailable (no C compiler)')
    from mmdwnet.ops.spec import spec
    n, c, g, r, h, w, k = case
    gen = torch.Generator().manual_seed(2)
    x, feat = torch.randn(n, c, h, w, generator=gen), torch.randn(n, r, h, w, generator=gen)
    w2d, bias = torch.randn(g * k * k, r, generator=gen), torch.randn(g * k * k, generator=gen)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for b in (bias, None):
            want = spec('local_aggregate_pointwise').decomposition(x, feat, w2d, b, g, k)
            fused = cpu_kernels._aggregate_pointwise_fused(x, feat, w2d, b, g, k)
            monkeypatch.setattr(cpu_kernels, 'FUSED_MAX_REDUCED', 0)
            unfused = cpu_kernels.aggregate_pointwise(x, feat, w2d, b, g, k)
            monkeypatch.setattr(cpu_kernels, 'FUSED_MAX_REDUCED', 32)
            torch.testing.assert_close(fused, want, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize('case', [
    # (n, c, g, r, h, w, k): 4 + 2 channels a group (the 4-channel path and a 2-channel rest)
    # on rows of 40 (16-blocks, an 8-block, the scalar ends); one group of 8 on an odd width;
    # 3 channels a group (the presets' first stage: G = 32 at C = 96) with an even kernel; 4 + 1
    # channels with a 9x9 kernel; a map narrower than k
    (2, 12, 2, 5, 24, 40, 5), (1, 8, 1, 3, 30, 17, 7), (1, 6, 2, 4, 20, 21, 4),
    (2, 5, 1, 3, 12, 50, 9), (1, 4, 2, 3, 5, 3, 7)])
@pytest.mark.parametrize('tile_bytes', [2000, 1 << 40])  # row tiles (with halos), whole maps
@pytest.mark.parametrize('threads', [1, 2])
def test_pointwise_input_gradient_gather_paths(case, tile_bytes, threads, monkeypatch):
    """The I-D-DW backward's input gradient (``mmdw_scatter_rows``: gathered one tap row at a
    time into the gradient of x, vector blocks of 16 and 8 positions, the ends of each row pass
    one by one) equals the spec's decomposition, with every other gradient, for row tiles whose
    halos add into the neighbouring rows and for whole maps, on 1 and 2 threads."""
    if not cpu_kernels.available():
        pytest.skip('compiled CPU kernels unavailable (no C compiler)')
    from mmdwnet.ops.spec import spec
    n, c, g, r, h, w, k = case
    x, feat, grad, w2d, bias = _pointwise_inputs(n, c, h, w, g, k, r, seed=5)
    monkeypatch.setattr(cpu_kernels, 'KERNEL_TILE_BYTES', tile_bytes)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = cpu_kernels.aggregate_pointwise_backward(grad, x, feat, w2d, bias, g, k)
    finally:
        torch.set_num_threads(before)
    ref = spec('local_aggregate_pointwise_backward').decomposition(grad, x, feat, w2d, bias, g, k)
    for name, mine, theirs in zip(('x', 'feat', 'weight', 'bias'), got, ref):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize('tile_bytes', [1, 3000, 1 << 40])
def test_fused_pointwise_row_tiles_equal_the_spec(tile_bytes, monkeypatch):
    """The fused forward copies its input rows a tile at a time (one row, a few, the whole map):
    every tiling gives the spec's result, odd and even k."""
    if not cpu_kernels.available():
        pytest.skip('compiled CPU kernels unavailable (no C compiler)')
    from mmdwnet.ops.spec import spec
    monkeypatch.setattr(cpu_kernels, 'KERNEL_TILE_BYTES', tile_bytes)
    gen = torch.Generator().manual_seed(4)
    for n, c, g, r, h, w, k in [(2, 6, 3, 4, 9, 7, 5), (1, 8, 4, 3, 6, 10, 4)]:
        x, feat = torch.randn(n, c, h, w, generator=gen), torch.randn(n, r, h, w, generator=gen)
        w2d, bias = torch.randn(g * k * k, r, generator=gen), torch.randn(g * k * k, generator=gen)
        torch.testing.assert_close(
            cpu_kernels._aggregate_pointwise_fused(x, feat, w2d, bias, g, k),
            spec('local_aggregate_pointwise').decomposition(x, feat, w2d, bias, g, k),
            rtol=1e-5, atol=1e-5)


def test_fused_pointwise_path_is_taken_where_it_is_faster(monkeypatch):
    """aggregate_pointwise runs the fused kernel for R <= FUSED_MAX_REDUCED on maps of at least
    FUSED_MIN_POSITIONS positions, the unfused steps otherwise (both measured faster there)."""
    if not cpu_kernels.available():
        pytest.skip('compiled CPU kernels unavailable (no C compiler)')
    calls = []
    fused = cpu_kernels._aggregate_pointwise_fused
    monkeypatch.setattr(cpu_kernels, '_aggregate_pointwise_fused',
                        lambda *a: calls.append(a[1].shape) or fused(*a))
    g, k = 2, 3
    for r, (h, w) in [(8, (4, 4)), (32, (8, 8)), (33, (8, 8)), (8, (3, 5))]:
        x, feat = torch.randn(1, 4, h, w), torch.randn(1, r, h, w)
        cpu_kernels.aggregate_pointwise(x, feat, torch.randn(g * k * k, r), None, g, k)
    assert calls == [(1, 8, 4, 4), (1, 32, 8, 8)]


@pytest.mark.parametrize('hw', [(1, 1), (3, 2)])
def test_one_tap_pointwise_is_a_per_group_scale(hw):
    """A 7x7 I-D-DW kernel on a 1x1 map reaches one tap (and k = 1 has one anywhere): the op is
    then x times the generated per-group scale, computed without the aggregation kernel."""
    from mmdwnet.ops.spec import spec
    gen = torch.Generator().manual_seed(3)
    n, c, g, r = 3, 8, 4, 5
    k = 7 if hw == (1, 1) else 1
    x, feat = torch.randn(n, c, *hw, generator=gen), torch.randn(n, r, *hw, generator=gen)
    w2d, bias = torch.randn(g * k * k, r, generator=gen), torch.randn(g * k * k, generator=gen)
    for b in (bias, None):
        torch.testing.assert_close(
            cpu_kernels.aggregate_pointwise(x, feat, w2d, b, g, k),
            spec('local_aggregate_pointwise').decomposition(x, feat, w2d, b, g, k),
            rtol=1e-5, atol=1e-5)


def test_pointwise_memory_is_bounded_by_the_tile(monkeypatch):
    """Peak memory of the compiled I-D-DW op (forward, and forward + backward) stays near the
    tile budget instead of the (G*k*k, H, W) kernels of a whole image (45 MB here); with an
    unbounded tile the same measurement sees the whole tensor, so the bound can fail."""
    if not cpu_kernels.available():
        pytest.skip('compiled CPU kernels unavailable (no C compiler)')
    from mmdwnet.benchmark.measure import peak_alloc_mib
    from mmdwnet.ops.backends import _common
    gen = torch.Generator().manual_seed(0)
    n, c, h, w, g, k, r = 1, 32, 120, 120, 16, 7, 8
    x, feat, grad = (torch.randn(n, ch, h, w, generator=gen) for ch in (c, r, c))
    w2d = torch.randn(g * k * k, r, generator=gen)
    full_mib = g * k * k * h * w * 4 / 2**20  # 43 MiB
    maps_mib = (c + r) * h * w * 4 / 2**20  # an input-sized tensor: 2.2 MiB

    def peaks(tile_bytes):
        monkeypatch.setattr(cpu_kernels, 'KERNEL_TILE_BYTES', tile_bytes)
        _common.release_workspace()
        fwd = peak_alloc_mib(lambda: cpu_kernels.aggregate_pointwise(x, feat, w2d, None, g, k))
        _common.release_workspace()
        bwd = peak_alloc_mib(lambda: cpu_kernels.aggregate_pointwise_backward(
            grad, x, feat, w2d, None, g, k))
        _common.release_workspace()
        return fwd, bwd

    monkeypatch.setattr(cpu_kernels, 'FUSED_MAX_REDUCED', 0)  # the unfused, tiled steps
    whole = peaks(1 << 40)
    assert all(p > full_mib for p in whole), whole
    tiled = peaks(1 << 20)
    assert all(p < 1 + 3 * maps_mib for p in tiled), (tiled, maps_mib)
    # the fused forward (R = 8 <= FUSED_MAX_REDUCED) writes no kernel tensor whatever the tile;
    # its backward is the tiled one
    monkeypatch.setattr(cpu_kernels, 'FUSED_MAX_REDUCED', 32)
    fused_whole, _ = peaks(1 << 40)
    assert fused_whole < 1 + 3 * maps_mib, (fused_whole, maps_mib)
