"""The one place where mmdwnet's performance switches are read.

Two switches, one mechanism (an environment variable, overridable per thread by a context
manager, read at every call so that changing either never has a process-wide side effect):

* ``MMDWNET_OPS_BACKEND`` / :func:`ops_backend` -- which backend runs the local-aggregation ops:
  ``auto`` (default: the best available for the tensors' device), ``reference`` (alias
  ``torch``: pure PyTorch), ``openmp`` (alias ``cpu``: compiled CPU kernels), ``triton``
  (Triton kernels) or a registered third-party backend; defined in
  :mod:`mmdwnet.ops.backends.base`, re-exported here.
* ``MMDWNET_FAST_INFERENCE`` / :func:`fast_inference` -- the fused CPU inference fast path of the
  dense layers (on by default; ``0``, ``false`` or ``off`` switch it off).
"""
import contextlib
import os
import threading
from typing import Iterator

from .backends.base import backend_names, ops_backend, use_ops_backend

__all__ = ['BACKENDS', 'backend_names', 'ops_backend', 'use_ops_backend',
           'fast_inference_enabled', 'fast_inference']

#: the documented ``MMDWNET_OPS_BACKEND`` values of earlier versions (``torch`` and ``cpu`` are
#: aliases of ``reference`` and ``openmp``); :func:`backend_names` lists every value, third-party
#: backends included
BACKENDS = ('auto', 'torch', 'cpu', 'triton')

_state = threading.local()


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
