"""Issue #31: every ``torch.ops.mmdwnet.*`` operator checks its own arguments.

The raw operators are called directly (not through :mod:`mmdwnet.ops`' functions) with one bad
argument class at a time -- mismatched shapes, wrong dimensions, bad group counts, bad kernel
sizes, mixed dtypes, mixed devices -- and must raise a ``ValueError`` that names the argument,
before any backend kernel runs (which would read out of bounds or divide by zero).  Strided
inputs are accepted and give the contiguous result.  A large kernel size runs the compiled
kernels without an array on the thread stack (checked in a child process with a small OpenMP
thread stack)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mmdwnet.ops  # noqa: F401  (registers torch.ops.mmdwnet)
from mmdwnet.ops.backends import cpu
from mmdwnet.ops.checks import MAX_KERNEL_SIZE
from mmdwnet.ops.switches import use_ops_backend

ROOT = Path(__file__).resolve().parents[2]
ops = torch.ops.mmdwnet
BACKENDS = ['torch', 'cpu']


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == 'cpu' and not cpu.available():
        pytest.skip('compiled CPU kernels unavailable (no C compiler)')
    with use_ops_backend(request.param):
        yield request.param


def z(*shape, dtype=torch.float32, device='cpu'):
    return torch.zeros(*shape, dtype=dtype, device=device)


N, C, H, W, G, K, R = 2, 6, 5, 4, 3, 3, 4
X = z(N, C, H, W)
WT = z(N, G, K, K, H, W)
FEAT, PW, PB = z(N, R, H, W), z(G * K * K, R, 1, 1), z(G * K * K)
KERN, DB = z(N, C, K, K), z(C)

# (op, arguments, regex the message must match: it names the argument)
# yapf: disable
BAD = {
    # shapes of x and weight disagree
    'aggregate_hw': (ops.local_aggregate,
        (X, z(N, G, K, K, H + 1, W)),
        r'weight .* does not match input'),
    'aggregate_batch': (ops.local_aggregate,
        (X, z(N + 1, G, K, K, H, W)),
        r'weight .* does not match input'),
    'scatter_hw': (ops.local_scatter,
        (X, z(N, G, K, K, H, W + 2)),
        r'weight .* does not match input'),
    'correlate_shapes': (ops.local_correlate, (X, z(N, C, H, W + 1), K, G), r'k_map .* shape of q'),
    'pointwise_feat': (ops.local_aggregate_pointwise,
        (X, z(N, R, H + 1, W), PW, PB, G, K),
        r'feat .* \(N, R, H, W\)'),
    'pointwise_weight': (ops.local_aggregate_pointwise,
        (X, FEAT, z(G * K * K + 1, R, 1, 1), PB, G, K),
        r'weight .* \(G\*k\*k, R, 1, 1\)'),
    'pointwise_bias': (ops.local_aggregate_pointwise,
        (X, FEAT, PW, z(5), G, K),
        r'bias \(5,\) must be'),
    'pointwise_backward_grad': (ops.local_aggregate_pointwise_backward,
        (z(N, C, H, W + 1), X, FEAT, PW, PB, G, K),
        r'grad .* shape of x'),
    'ddw_kernels': (ops.dynamic_depthwise_conv2d,
        (X, z(N, C + 1, K, K), DB),
        r'kernels .* \(N, C, k, k\)'),
    'ddw_bias': (ops.dynamic_depthwise_conv2d, (X, KERN, z(C + 1)), r'bias \(7,\) must be \(C, \)'),
    'ddw_backward_grad': (ops.dynamic_depthwise_conv2d_backward,
        (z(N, C, H + 1, W), X, KERN, DB),
        r'grad .* shape of x'),
    # wrong number of dimensions
    'aggregate_x_dims': (ops.local_aggregate, (X[0], WT), r'x must be a 4-D tensor'),
    'aggregate_weight_dims': (ops.local_aggregate, (X, WT[0]), r'weight must be a 6-D tensor'),
    'correlate_dims': (ops.local_correlate, (X[0], X[0], K, G), r'q must be a 4-D tensor'),
    'pointwise_weight_dims': (ops.local_aggregate_pointwise,
        (X, FEAT, PW[..., 0, 0], PB, G, K),
        r'weight must be a 4-D tensor'),
    'ddw_kernels_dims': (ops.dynamic_depthwise_conv2d,
        (X, KERN[0], DB),
        r'kernels must be a 4-D tensor'),
    # group counts: zero (the C kernels divide by it) and not dividing the channels
    'aggregate_groups_zero': (ops.local_aggregate,
        (X, z(N, 0, K, K, H, W)),
        r'weight dim 1 must be an int >= 1'),
    'aggregate_groups_split': (ops.local_aggregate,
        (X, z(N, 4, K, K, H, W)),
        r'6 channels cannot be split into 4 .*weight dim 1'),
    'scatter_groups_zero': (ops.local_scatter,
        (X, z(N, 0, K, K, H, W)),
        r'weight dim 1 must be an int >= 1'),
    'correlate_groups_zero': (ops.local_correlate, (X, X, K, 0), r'groups must be an int >= 1'),
    'correlate_groups_split': (ops.local_correlate,
        (X, X, K, 4),
        r'cannot be split into 4 .*groups'),
    'pointwise_groups_zero': (ops.local_aggregate_pointwise,
        (X, FEAT, z(0, R, 1, 1), None, 0, K),
        r'groups must be an int >= 1'),
    'pointwise_backward_groups': (ops.local_aggregate_pointwise_backward,
        (X, X, FEAT, z(4 * K * K, R, 1, 1), None, 4, K),
        r'cannot be split into 4 .*groups'),
    # kernel sizes: zero, negative, above the maximum, inconsistent between arguments
    'correlate_k_zero': (ops.local_correlate, (X, X, 0, G), r'kernel_size must be an int >= 1'),
    'correlate_k_negative': (ops.local_correlate,
        (X, X, -3, G),
        r'kernel_size must be an int >= 1'),
    'correlate_k_huge': (ops.local_correlate,
        (X, X, MAX_KERNEL_SIZE + 1, G),
        rf'kernel_size must be an int >= 1 and <= {MAX_KERNEL_SIZE}'),
    'pointwise_k_zero': (ops.local_aggregate_pointwise,
        (X, FEAT, z(0, R, 1, 1), None, G, 0),
        r'kernel_size must be an int >= 1'),
    'pointwise_k_huge': (ops.local_aggregate_pointwise,
        (X, FEAT, PW, PB, G, MAX_KERNEL_SIZE + 1),
        r'kernel_size must be an int >= 1 and <= 256'),
    'pointwise_k_inconsistent': (ops.local_aggregate_pointwise,
        (X, FEAT, PW, PB, G, K + 1),
        r'weight .* must be \(G\*k\*k, R, 1, 1\) = \(48, 4, 1, 1\).*kernel_size=4'),
    'aggregate_k_not_square': (ops.local_aggregate,
        (X, z(N, G, K, K + 1, H, W)),
        r'weight needs a square kernel'),
    'aggregate_k_zero': (ops.local_aggregate,
        (X, z(N, G, 0, 0, H, W)),
        r'kernel size \(weight dims 2 and 3\) must be an int >= 1'),
    'ddw_k_not_square': (ops.dynamic_depthwise_conv2d,
        (X, z(N, C, K, K + 1), DB),
        r'kernels .* must be \(N, C, k, k\)'),
    'ddw_k_zero': (ops.dynamic_depthwise_conv2d,
        (X, z(N, C, 0, 0), DB),
        r'kernel size \(kernels dims 2 and 3\) must be an int >= 1'),
    # dtypes: a mix, and a non-floating dtype
    'aggregate_dtype_mix': (ops.local_aggregate,
        (X, WT.double()),
        r'weight has dtype torch.float64 but x has torch.float32'),
    'correlate_int': (ops.local_correlate, (X.long(), X.long(), K, G), r'q has dtype torch.int64'),
    'pointwise_dtype_mix': (ops.local_aggregate_pointwise,
        (X, FEAT, PW, PB.half(), G, K),
        r'bias has dtype torch.float16 but x'),
    'ddw_backward_dtype_mix': (ops.dynamic_depthwise_conv2d_backward,
        (X.double(), X, KERN, DB),
        r'x has dtype torch.float32 but grad has torch.float64'),
    # devices: a mix (a meta tensor stands for a second device on a CPU-only machine)
    'aggregate_device_mix': (ops.local_aggregate,
        (X, z(N, G, K, K, H, W, device='meta')),
        r'weight is on meta but x is on cpu'),
    'correlate_device_mix': (ops.local_correlate,
        (X, z(N, C, H, W, device='meta'), K, G),
        r'k_map is on meta but q is on cpu'),
    'ddw_device_mix': (ops.dynamic_depthwise_conv2d,
        (X, KERN, z(C, device='meta')),
        r'bias is on meta but x is on cpu'),
    'pointwise_backward_device_mix': (ops.local_aggregate_pointwise_backward,
        (X, X, z(N, R, H, W, device='meta'), PW, PB, G, K),
        r'feat is on meta but grad is on cpu'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_raw_operator_rejects_bad_arguments(case, backend):
    op, args, message = BAD[case]
    with pytest.raises(ValueError, match=message) as info:
        op(*args)
    assert str(info.value).startswith('mmdwnet.ops.')  # says which operator


def test_public_functions_share_the_checks():
    """The public functions raise the same errors (they call the operators)."""
    from mmdwnet.ops import local_aggregate, local_correlate
    with pytest.raises(ValueError, match='weight dim 1 must be an int >= 1'):
        local_aggregate(X, z(N, 0, K, K, H, W))
    with pytest.raises(ValueError, match='groups must be an int >= 1'):
        local_correlate(X, X, K, 0)


def test_fake_tensors_check_dtypes_and_devices():
    """Under fake tensors (torch.compile / torch.export) the size-free checks run too."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        x, wt = torch.empty(N, C, H, W), torch.empty(N, G, K, K, H, W, dtype=torch.float64)
        with pytest.raises(ValueError, match='weight has dtype torch.float64 but x'):
            ops.local_aggregate(x, wt)
        with pytest.raises(ValueError, match='weight must be a 6-D tensor'):
            ops.local_aggregate(x, wt[0].float())


def _rand(*shape, seed=[0]):
    seed[0] += 1
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed[0]))


def test_strided_inputs_equal_contiguous_ones(backend):
    """Transposed, sliced and channels-last inputs of every operator give the contiguous
    result (the backends copy what they need)."""
    def strided(t):  # same values, non-contiguous memory
        if t.dim() == 1:
            return torch.stack([t, t], 1)[:, 0]
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)

    x, g, km = _rand(N, C, H, W), _rand(N, C, H, W), _rand(N, C, H, W)
    wt = _rand(N, G, K, K, H, W)
    feat, pw, pb = _rand(N, R, H, W), _rand(G * K * K, R, 1, 1), _rand(G * K * K)
    kern, db = _rand(N, C, K, K), _rand(C)
    wide = _rand(N, 2 * C, H, W)[:, ::2]  # a channel-strided slice
    calls = [
        (ops.local_aggregate, (x, wt)), (ops.local_aggregate, (wide, wt)),
        (ops.local_scatter, (g, wt)), (ops.local_correlate, (x, km, K, G)),
        (ops.local_aggregate_pointwise, (x, feat, pw, pb, G, K)),
        (ops.local_aggregate_pointwise_backward, (g, x, feat, pw, pb, G, K)),
        (ops.dynamic_depthwise_conv2d, (x, kern, db)),
        (ops.dynamic_depthwise_conv2d_backward, (g, x, kern, db)),
    ]
    for op, args in calls:
        want = op(*[a.contiguous() if isinstance(a, torch.Tensor) else a for a in args])
        got = op(*[strided(a) if isinstance(a, torch.Tensor) else a for a in args])
        for a, b in zip(want if isinstance(want, tuple) else (want, ),
                        got if isinstance(got, tuple) else (got, )):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


LARGE_KERNEL = r'''
import torch
from mmdwnet.ops import local_aggregate_pointwise
from mmdwnet.ops.backends import cpu
from mmdwnet.ops.export import local_aggregate_pointwise as decomposition
from mmdwnet.ops.switches import use_ops_backend
assert cpu.available()
torch.set_num_threads(2)
k = 255  # 65025 window taps: an array of k*k longs is 520 kB, above the thread stack
x, feat = torch.randn(2, 1, 6, 5), torch.randn(2, 1, 6, 5)
w = torch.randn(k * k, 1, 1, 1)
with use_ops_backend('cpu'), torch.no_grad():
    out = local_aggregate_pointwise(x, feat, w, None, 1, k)
assert (out - decomposition(x, feat, w, None, 1, k)).abs().max().item() < 1e-3
print('ok')
'''


@pytest.mark.skipif(not cpu.available(), reason='compiled CPU kernels unavailable')
def test_large_kernel_needs_no_thread_stack():
    """The I-D-DW kernel with a large window runs in OpenMP worker threads whose stack is
    smaller than k*k longs (the old per-call stack array crashed the process on a signal)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_STACKSIZE='256K', OMP_NUM_THREADS='2')
    proc = subprocess.run([sys.executable, '-c', LARGE_KERNEL], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == 'ok', (proc.returncode,
                                                                  proc.stderr[-2000:])
