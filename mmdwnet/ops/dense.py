"""Inference fast path of the dense (pointwise) layers on CPU.

Every backbone of this package spends most of its CPU inference time in the FFN of its blocks
(``x + fc2(act(fc1(norm(x)))``, 8 C^2 multiply-adds per position against 2-3 C^2 for the mixer
projections).  Run as plain ``nn.Linear`` / ``nn.GELU`` modules on a CPU, that FFN pays for:

* PyTorch's float32 ``addmm`` (MKL sgemm), which on some CPUs runs well below the speed of the
  oneDNN kernels that PyTorch already uses for convolutions (measured on the benchmark machine,
  an AMD EPYC with AVX-512: 2-2.5x slower for these shapes, docs/benchmark.md);
* a fresh (B*H*W, 4C) hidden tensor for the ``fc1`` output and another for the activation: at
  stage 1 of a tiny model at batch 8 each is 38 MiB, above glibc's mmap threshold, so every
  allocation is new memory whose page faults cost as much as the matrix product;
* separate passes for the bias, the activation, the pre-FFN norm and the residual add.

:func:`ffn_residual` computes the same ``x + ffn(norm(x))`` with oneDNN matrix products
(``torch.ops.mkldnn._linear_pointwise``, the op ``torch.compile`` itself emits for CPU linears)
that fuse bias and activation, over chunks of rows so that the hidden tensor stays in cache,
with an eval-mode BatchNorm folded into ``fc1``.  Outputs agree with the module path within
float32 rounding (tests/test_dense_fast_path.py).

It runs only where nothing can tell the difference: no autograd graph is being recorded
(``torch.no_grad`` / inference mode), the block is in eval mode, CPU float32 tensors, not while
TorchScript traces (FLOP counting) or ``torch.compile`` compiles, and only if oneDNN is present
and passes a one-time check.
``MMDWNET_FAST_INFERENCE=0`` or :func:`fast_inference` (``with fast_inference(False): ...``)
switches it off (the benchmark's "plain modules" rows).
"""
import contextlib
import os
import threading
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['fast_inference', 'fast_inference_enabled', 'ffn_residual', 'linear', 'use_fast_path']

# Rows per chunk are chosen so that one chunk of the hidden tensor is about this many bytes
# (fits the L2/L3 caches; measured flat between 1 and 8 MiB on the benchmark machine).
HIDDEN_CHUNK_BYTES = 4 << 20

_state = threading.local()
_probe = {}


def fast_inference_enabled():
    """Whether the fast path is switched on (``MMDWNET_FAST_INFERENCE`` / :func:`fast_inference`)."""
    flag = getattr(_state, 'enabled', None)
    if flag is None:
        return os.environ.get('MMDWNET_FAST_INFERENCE', '1').lower() not in ('0', 'false', 'off')
    return flag


@contextlib.contextmanager
def fast_inference(enabled=True):
    """Context manager that switches the CPU inference fast path on or off in this thread."""
    previous = getattr(_state, 'enabled', None)
    _state.enabled = bool(enabled)
    try:
        yield
    finally:
        _state.enabled = previous


def _onednn_linear_ok():
    """One-time check that ``torch.ops.mkldnn._linear_pointwise`` exists and agrees with
    ``F.linear`` + GELU; a failure warns once and keeps the module path."""
    if 'ok' not in _probe:
        ok = False
        try:
            if torch.backends.mkldnn.is_available():
                gen = torch.Generator().manual_seed(0)
                x = torch.randn(37, 24, generator=gen)
                w, b = torch.randn(40, 24, generator=gen), torch.randn(40, generator=gen)
                with torch.no_grad():
                    got = torch.ops.mkldnn._linear_pointwise(x, w, b, 'gelu', [], 'none')
                    ok = bool((got - F.gelu(F.linear(x, w, b))).abs().max() < 1e-4)
        except (RuntimeError, AttributeError) as e:
            warnings.warn(f'mmdwnet: oneDNN linear unavailable ({e}); the CPU inference fast '
                          'path is off')
        _probe['ok'] = ok
    return _probe['ok']


def _compiling():
    is_compiling = getattr(getattr(torch, 'compiler', None), 'is_compiling', None)
    return bool(is_compiling and is_compiling())


def use_fast_path(module, x):
    """True when ``module`` may run the fast path on ``x`` (see the module docstring).

    Off under ``torch.compile``, which makes its own fused CPU kernels (and cannot lower
    ``_linear_pointwise`` on weights that are not graph constants)."""
    return (not module.training and not torch.is_grad_enabled() and x.device.type == 'cpu'
            and x.dtype == torch.float32 and not torch.jit.is_tracing()
            and not torch.jit.is_scripting() and not _compiling() and fast_inference_enabled()
            and _onednn_linear_ok())


def linear(x, layer):
    """``layer(x)`` for an ``nn.Linear`` ``layer``; one oneDNN matrix product on the fast path.

    Shape:
        (..., in_features) -> (..., out_features).
    """
    if not use_fast_path(layer, x):
        return layer(x)
    return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, 'none', [], '')


def _activation(act):
    """(attr, algorithm) of oneDNN's fused post-op for ``act``, or None if it has none."""
    if isinstance(act, nn.GELU):
        return 'gelu', act.approximate
    if isinstance(act, nn.ReLU):
        return 'relu', ''
    return None


def _fold_batch_norm(norm, fc1):
    """Eval BatchNorm followed by ``fc1``: the (weight, bias) of one equivalent linear."""
    scale = norm.running_var.add(norm.eps).rsqrt()
    shift = -norm.running_mean * scale
    if norm.affine:
        scale = scale * norm.weight
        shift = shift * norm.weight + norm.bias
    bias = fc1.weight @ shift
    if fc1.bias is not None:
        bias = bias + fc1.bias
    return fc1.weight * scale, bias


def _ffn_parts(ffn):
    """(fc1, act, fc2) of an mmcv ``FFN`` with two fully connected layers, or None."""
    layers = getattr(ffn, 'layers', None)
    if (getattr(ffn, 'num_fcs', None) != 2 or not isinstance(layers, nn.Sequential)
            or len(layers) < 2 or not isinstance(getattr(ffn, 'gamma2', None), nn.Identity)
            or getattr(ffn, 'add_identity', False)):
        return None
    first, fc2 = layers[0], layers[1]
    if not (isinstance(first, nn.Sequential) and len(first) >= 2 and isinstance(first[0], nn.Linear)
            and isinstance(fc2, nn.Linear)):
        return None
    return first[0], first[1], fc2


def ffn_residual(x, ffn, norm=None):
    """``x + ffn(norm(x))`` for channels-last ``x`` (..., C) in eval mode, fast on CPU.

    Args:
        x (Tensor): (..., C) float32 on the CPU.
        ffn (mmcv.cnn.bricks.transformer.FFN): two fully connected layers, no identity.
        norm (nn.Module | None): the norm before the FFN: an eval BatchNorm (folded into
            ``fc1``), a LayerNorm (applied chunk by chunk) or None.

    Returns:
        Tensor | None: (..., C); None when this FFN/norm has no fast form (then the caller runs
        the modules).
    """
    parts = _ffn_parts(ffn)
    if parts is None:
        return None
    fc1, act, fc2 = parts
    post = _activation(act)
    layer_norm = None
    w1, b1 = fc1.weight, fc1.bias
    if isinstance(norm, _BatchNorm):
        if norm.running_mean is None:
            return None
        w1, b1 = _fold_batch_norm(norm, fc1)
    elif isinstance(norm, nn.LayerNorm):
        layer_norm = norm
    elif norm is not None:
        return None
    onednn_linear = torch.ops.mkldnn._linear_pointwise  # bias may be None

    c = x.shape[-1]
    rows = x.reshape(-1, c)
    out = torch.empty_like(rows)
    step = max(64, HIDDEN_CHUNK_BYTES // (w1.shape[0] * x.element_size()))
    for a in range(0, rows.shape[0], step):
        xr = rows[a:a + step]
        h = xr if layer_norm is None else F.layer_norm(
            xr, layer_norm.normalized_shape, layer_norm.weight, layer_norm.bias, layer_norm.eps)
        if post is not None:
            h = onednn_linear(h, w1, b1, post[0], [], post[1])
        else:
            h = act(onednn_linear(h, w1, b1, 'none', [], ''))
        torch.add(xr, onednn_linear(h, fc2.weight, fc2.bias, 'none', [], ''),
                  out=out[a:a + step])
    return out.view(x.shape)
