"""The switch of the dense layers' CPU inference fast path (:mod:`.dense`).

``MMDWNET_FAST_INFERENCE`` (on by default; ``0``, ``false`` or ``off`` switch it off), overridable
per thread by :func:`fast_inference`; read at every call, so changing it never has a
process-wide side effect.  The ops' backend switch (``MMDWNET_OPS_BACKEND``) lives with the ops,
in :mod:`mmdwnet.ops.switches`.
"""
import os
from typing import ContextManager

from mmdwnet.utils.thread_switch import ThreadSwitch

__all__ = ['fast_inference_enabled', 'fast_inference']

_FAST = ThreadSwitch()


def fast_inference_enabled() -> bool:
    """Whether the dense-layer CPU inference fast path is on (env var / :func:`fast_inference`)."""
    flag = _FAST.value
    if flag is None:
        return os.environ.get('MMDWNET_FAST_INFERENCE', '1').lower() not in ('0', 'false', 'off')
    return flag


def fast_inference(enabled: bool = True) -> ContextManager[None]:
    """Context manager that switches the CPU inference fast path on or off in this thread."""
    return _FAST.override(bool(enabled))
