"""The one place where mmdwnet's performance switches are read.

Two switches, one mechanism (an environment variable, overridable per thread by a context
manager, read at every call so that changing either never has a process-wide side effect):

* ``MMDWNET_OPS_BACKEND`` / :func:`ops_backend` -- which backend runs the local-aggregation ops:
  ``auto`` (default: the best available for the tensors' device), ``torch`` (pure PyTorch
  reference backend), ``cpu`` (compiled CPU kernels) or ``triton`` (Triton kernels).
* ``MMDWNET_FAST_INFERENCE`` / :func:`fast_inference` -- the fused CPU inference fast path of the
  dense layers (on by default; ``0``, ``false`` or ``off`` switch it off).
"""
import contextlib
import os
import threading
from typing import Iterator, Optional

__all__ = ['BACKENDS', 'ops_backend', 'use_ops_backend', 'fast_inference_enabled',
           'fast_inference']

BACKENDS = ('auto', 'torch', 'cpu', 'triton')

_state = threading.local()


def ops_backend() -> str:
    """The requested ops backend: a thread's override, else ``MMDWNET_OPS_BACKEND``, else auto.

    Raises:
        ValueError: the environment variable names no known backend.
    """
    name = getattr(_state, 'backend', None)
    if name is None:
        name = os.environ.get('MMDWNET_OPS_BACKEND', 'auto').strip().lower() or 'auto'
    if name not in BACKENDS:
        raise ValueError(f'MMDWNET_OPS_BACKEND={name!r} is not a known ops backend; use one of '
                         f'{", ".join(BACKENDS)}')
    return name


@contextlib.contextmanager
def use_ops_backend(name: Optional[str]) -> Iterator[None]:
    """Run the ops of this thread on backend ``name`` (``None``: back to the environment)."""
    if name is not None and name not in BACKENDS:
        raise ValueError(f'unknown ops backend {name!r}; use one of {", ".join(BACKENDS)}')
    previous = getattr(_state, 'backend', None)
    _state.backend = name
    try:
        yield
    finally:
        _state.backend = previous


def fast_inference_enabled() -> bool:
    """Whether the dense-layer CPU inference fast path is on (env var / :func:`fast_inference`)."""
    flag = getattr(_state, 'fast', None)
    if flag is None:
        return os.environ.get('MMDWNET_FAST_INFERENCE', '1').lower() not in ('0', 'false', 'off')
    return flag


@contextlib.contextmanager
def fast_inference(enabled: bool = True) -> Iterator[None]:
    """Context manager that switches the CPU inference fast path on or off in this thread."""
    previous = getattr(_state, 'fast', None)
    _state.fast = bool(enabled)
    try:
        yield
    finally:
        _state.fast = previous
