"""The switch that picks the backend of the local-aggregation ops.

The ops' switch: an environment variable, overridable per thread by a context manager, read at
every call so that changing it never has a process-wide side effect.

* ``MMDWNET_OPS_BACKEND`` / :func:`ops_backend` -- which backend runs the local-aggregation ops:
  ``auto`` (default: the best available for the tensors' device), ``torch`` (pure PyTorch
  reference backend), ``cpu`` (compiled CPU kernels) or ``triton`` (Triton kernels).

The dense layers' ``MMDWNET_FAST_INFERENCE`` switch is :mod:`mmdwnet.models.layers.switches`
(``fast_inference`` is still importable from here).
"""
import contextlib
import os
import threading
from typing import Iterator, Optional

__all__ = ['BACKENDS', 'ops_backend', 'use_ops_backend']

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


def __getattr__(name: str):
    """``fast_inference`` / ``fast_inference_enabled`` moved to
    :mod:`mmdwnet.models.layers.switches` (the dense layers' switch); kept importable here."""
    if name in ('fast_inference', 'fast_inference_enabled'):
        from mmdwnet.models.layers import switches
        return getattr(switches, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
