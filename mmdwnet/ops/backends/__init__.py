"""Backends of the mmdwnet ops, chosen per call (:mod:`mmdwnet.ops.backends.base`).

* ``reference`` (:mod:`.reference`, alias ``torch``) -- pure PyTorch, any device and dtype;
  runs every op a chosen backend does not implement;
* ``openmp`` (:mod:`.cpu`, alias ``cpu``) -- compiled C/OpenMP kernels, CPU float32 (built on
  first use);
* ``triton`` (:mod:`.triton`) -- Triton kernels for CUDA (CPU tensors under
  ``TRITON_INTERPRET=1``); optional, imported on first use.

A third-party backend subclasses :class:`Backend` and calls :func:`register_backend`.
"""
from .base import (ALIASES, Backend, PrimitiveBackend, backend_names, get, ops_backend,
                   register_backend, select, unregister_backend, use_ops_backend)
from . import cpu, reference  # noqa: E402

register_backend(reference.BACKEND)
register_backend(cpu.BACKEND)

__all__ = ['ALIASES', 'Backend', 'PrimitiveBackend', 'backend_names', 'get', 'ops_backend',
           'register_backend', 'select', 'unregister_backend', 'use_ops_backend', 'reference',
           'cpu']
