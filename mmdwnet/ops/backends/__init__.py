"""Backends of the mmdwnet ops: one module each, the same primitives each, chosen per call.

Every backend module offers :class:`Backend` (a module-level protocol):

* ``reference`` -- pure PyTorch, any device and dtype (always available);
* ``cpu`` -- compiled C/OpenMP kernels, CPU float32 (built on first use);
* ``triton`` -- Triton kernels, CUDA (or CPU tensors under ``TRITON_INTERPRET=1``); optional.

:func:`select` is the one place that picks a backend, from the switch
:func:`mmdwnet.ops.switches.ops_backend` (``MMDWNET_OPS_BACKEND``) and the tensors:

* ``auto``: CUDA tensors -> ``triton`` if it imports and is available, else ``reference``;
  CPU float32 -> ``cpu`` if built, else ``reference``; anything else -> ``reference``;
* ``torch``: ``reference``;
* ``cpu`` / ``triton``: that backend; tensors it does not support (``supports``) run on
  ``reference``; an unavailable backend, or ``triton`` on CPU tensors without
  ``TRITON_INTERPRET=1``, raises a ``RuntimeError`` saying so.

Kernel sizes may be odd or even: outputs keep the input size, with zero padding
``(k - 1) // 2`` before (top/left) and ``k // 2`` after (bottom/right), as PyTorch's
``padding='same'``.
"""
import importlib
from types import ModuleType
from typing import Optional, Protocol, Tuple

from torch import Tensor

from .. import switches
from . import reference

__all__ = ['Backend', 'select', 'get', 'reference']


class Backend(Protocol):
    """What a backend module provides (shapes: x (N, C, H, W), G groups dividing C, k x k).

    Inputs may be float32/float16/bfloat16; low-precision inputs are accumulated in float32 and
    results returned in the input dtype.  Outputs are contiguous unless stated.
    """

    NAME: str

    def available(self) -> bool:
        """Whether the backend can run at all (built / importable / device present)."""

    def supports(self, *tensors: Tensor) -> bool:
        """Whether it takes these tensors (device, dtype)."""

    def aggregate(self, x: Tensor, w: Tensor, k: int) -> Tensor:
        """w (N|1, G, k, k, H, W) contiguous -> (N, C, H, W):
        ``out[n,c,h,w] = sum_ij w[n, c//(C/G), i, j, h, w] * x[n, c, h+i-pb, w+j-pb]``."""

    def scatter(self, g: Tensor, w: Tensor, k: int) -> Tensor:
        """Gradient of :meth:`aggregate` w.r.t. x: g (N, C, H, W) -> (N, C, H, W)."""

    def correlate(self, g: Tensor, x: Tensor, groups: int, k: int) -> Tensor:
        """-> (N, G, k, k, H, W):
        ``out[n,g,i,j,h,w] = sum_{c in g} g[n,c,h,w] * x[n,c,h+i-pb,w+j-pb]``."""

    def aggregate_pointwise(self, x: Tensor, feat: Tensor, w2d: Tensor, bias: Optional[Tensor],
                            groups: int, k: int) -> Tensor:
        """``aggregate(x, w2d (G*k*k, R) @ feat (N, R, H, W) + bias)``, the kernels never
        materialised for the whole batch."""

    def aggregate_pointwise_backward(self, grad: Tensor, x: Tensor, feat: Tensor, w2d: Tensor,
                                     bias: Optional[Tensor], groups: int, k: int) -> Tuple:
        """-> (grad x, grad feat, grad w2d, grad bias or None)."""

    def dynamic_depthwise(self, x: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
        """Per-image depth-wise conv: kernels (N, C, k, k), bias (C, ) or None (any strides)."""

    def dynamic_depthwise_backward(self, grad: Tensor, x: Tensor, kernels: Tensor,
                                   bias: Optional[Tensor]) -> Tuple:
        """-> (grad x, grad kernels, grad bias or None)."""


_modules = {'torch': reference}


def get(name: str) -> Optional[ModuleType]:
    """The backend module called ``name`` ('torch', 'cpu', 'triton'), None if it cannot be
    imported (Triton not installed)."""
    if name not in _modules:
        module = None
        try:
            module = importlib.import_module(f'{__name__}.{name}')
        except ImportError:
            if name != 'triton':
                raise
        _modules[name] = module
    return _modules[name]


def select(*tensors: Tensor) -> ModuleType:
    """The backend that runs an op on ``tensors`` (None entries are ignored)."""
    tensors = [t for t in tensors if t is not None]
    name = switches.ops_backend()
    device = tensors[0].device.type
    if name == 'auto':
        name = {'cuda': 'triton', 'cpu': 'cpu'}.get(device)
        backend = get(name) if name is not None else None
        if backend is not None and backend.supports(*tensors) and backend.available():
            return backend
        return reference
    if name == 'torch':
        return reference
    backend = get(name)
    # The Triton backend's own test of the interpreter (TRITON_INTERPRET=1 must have been set
    # before Triton was imported; setting it later changes nothing), not the variable itself.
    if name == 'triton' and device == 'cpu' and backend is not None \
            and not backend.interpreting():
        raise RuntimeError('MMDWNET_OPS_BACKEND=triton runs CPU tensors only in the Triton '
                           'interpreter: set TRITON_INTERPRET=1 before Python starts (Triton '
                           'reads it when imported), move the tensors to CUDA, or choose '
                           'another backend (auto, torch, cpu)')
    if backend is None or not backend.available():
        raise RuntimeError(f'MMDWNET_OPS_BACKEND={name} was requested but that backend is not '
                           'available here' + (' (Triton is not installed)' if backend is None
                                               else '') + '; use auto or torch')
    return backend if backend.supports(*tensors) else reference
