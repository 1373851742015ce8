"""Let ``torch.compile(model, dynamic=True)`` train on CPU with the default (inductor) backend.

The torch bug (pytorch/pytorch#185510 and #172204, open for the pinned torch 2.14.1): on CPU,
inductor's layout optimisation prefers channels-last for every tensor near a convolution, with
dynamic shapes too. ``GraphLowering.run_node`` then computes channels-last strides as sympy
expressions and, when a forward output saved for backward is a view, sorts them with
``ir.get_stride_order(strides)``. It does this without the shape environment, so a comparison
such as ``16*(s0//4) < 16`` cannot be decided, and sympy raises ``TypeError: cannot determine
truth value of Relational``. Every 4-D view a training graph saves triggers it: the
``(B, C, H, W)`` permutes of ``(B, H, W, C)`` tokens that feed the depth-wise convs and
BatchNorms, and the reshaped outputs of linear layers. So every mmdwnet preset fails, and
other channels-last models do too.

:func:`install` wraps ``torch._inductor.ir.get_stride_order``. When it is called without a
shape environment and the plain sort cannot decide, the wrapper sorts again with the shape
environment of the graph being lowered. That is what inductor does everywhere else
(``argsort_sym``): it decides the order from the shapes, and any guard it needs (here
``s0 >= 4``) becomes part of the compiled graph's guards. Calls that already work are not
touched. It is installed explicitly where compiled training runs (``CompileModulesHook``,
``benchmark_compile_train.py``), never by ``import mmdwnet``. ``tests/engine/test_compile.py`` trains
compiled presets with inductor and dynamic shapes, and checks the results against eager.
"""
import functools
import inspect

_MARK = '_mmdwnet_shape_env_fallback'
_fallbacks = 0  # stride orders decided by the fallback in this process


def fallbacks() -> int:
    """How many stride orders the fallback has decided in this process (the bug's hits)."""
    return _fallbacks


def _graph_shape_env():
    """The shape environment of the graph inductor is lowering, or None outside lowering."""
    from torch._inductor.virtualized import V
    try:
        return V.graph.sizevars.shape_env
    except (AttributeError, AssertionError):  # no graph handler installed
        return None


def _with_shape_env_fallback(get_stride_order):

    @functools.wraps(get_stride_order)
    def wrapper(seq, shape_env=None):
        try:
            return get_stride_order(seq, shape_env)
        except TypeError as e:  # sympy: "cannot determine truth value of Relational"
            graph_env = _graph_shape_env() if shape_env is None else None
            if graph_env is None or 'truth value' not in str(e):
                raise
            order = get_stride_order(seq, graph_env)
            global _fallbacks
            _fallbacks += 1
            return order

    setattr(wrapper, _MARK, True)
    return wrapper


def install() -> bool:
    """Install the wrapper (idempotent). Returns True when it is in place. If this torch has no
    ``get_stride_order(seq, shape_env)``, returns False and changes nothing."""
    try:
        from torch._inductor import ir
    except ImportError:  # a torch build without inductor
        return False
    current = getattr(ir, 'get_stride_order', None)
    if current is None:
        return False
    if getattr(current, _MARK, False):
        return True
    if 'shape_env' not in inspect.signature(current).parameters:
        return False
    ir.get_stride_order = _with_shape_env_fallback(current)
    return True


__all__ = ['install', 'fallbacks']
