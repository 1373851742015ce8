"""The switch of the dense layers' CPU inference fast path (:mod:`.dense`).

``MMDWNET_FAST_INFERENCE`` (on by default; ``0``, ``false`` or ``off`` switch it off), overridable
per thread by :func:`fast_inference`; read at every call, so changing it never has a
process-wide side effect.  The ops' backend switch (``MMDWNET_OPS_BACKEND``) lives with the ops,
in :mod:`mmdwnet.ops.switches`.
"""
import contextlib
import os
import threading
from typing import Iterator

__all__ = ['fast_inference_enabled', 'fast_inference']

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
