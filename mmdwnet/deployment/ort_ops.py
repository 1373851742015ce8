"""mmdwnet's operators as onnxruntime custom ops: ONNX graphs that run mmdwnet's own kernels.

The standard-op ONNX graphs (:mod:`mmdwnet.ops.export`) spell every k x k aggregation as k*k
slice-multiply-add steps, which onnxruntime runs slower than mmdwnet's compiled kernels run in
PyTorch.  This module is the other way: the exporter writes each ``torch.ops.mmdwnet`` call as
one node of the ``ai.onnx.contrib`` domain (:data:`CUSTOM_OPS`), and onnxruntime runs that node
through onnxruntime-extensions' Python custom ops, which call the very operator eager PyTorch
calls (``torch.ops.mmdwnet.<op>`` on ``torch.from_numpy`` views of the node's inputs).

* export: :func:`export_custom_ops` (``with`` block) lets the exporters see the operators
  (:func:`mmdwnet.ops.export.keep_operators`) and tells the TorchScript exporter how to write
  them (:func:`register_symbolics`); the dynamo exporter takes :func:`translation_table` as
  ``custom_translation_table``.  Needs onnxscript (dynamo) but not onnxruntime-extensions.
* run: :func:`session_options` gives ``onnxruntime.SessionOptions`` with the kernels defined
  (:func:`register_kernels`) and the onnxruntime-extensions library registered;
  :func:`inference_session` opens any mmdwnet graph, registering the library only for a graph
  with custom nodes (:func:`custom_nodes`), so standard-op graphs never need
  onnxruntime-extensions.  A custom-op graph without it raises an ImportError that says what to
  install.

Such a graph needs Python, torch, mmdwnet and onnxruntime-extensions in the process that runs
it (the kernels are Python functions calling torch); standard-op graphs run in any ONNX runtime.

Node types (all inputs and the output float32; attributes INT):

=================================== ============================ =========================
node (``ai.onnx.contrib``)          inputs                       attributes
=================================== ============================ =========================
``MMDWLocalAggregate``              x, weight                    --
``MMDWLocalCorrelate``              q, k_map                     kernel_size, groups
``MMDWLocalAggregatePointwise``     x, feat, weight              groups, kernel_size
``MMDWLocalAggregatePointwiseBias`` x, feat, weight, bias        groups, kernel_size
``MMDWDynamicDepthwiseConv2d``      x, kernels                   --
``MMDWDynamicDepthwiseConv2dBias``  x, kernels, bias             --
=================================== ============================ =========================

Shapes as the operators of :mod:`mmdwnet.ops` (e.g. ``MMDWLocalCorrelate``: q, k_map (N, C, H, W)
-> (N, G, k, k, H, W)).  An absent optional bias is the node type without ``Bias``: no empty
input stands for "none".
"""
import contextlib
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import torch

from mmdwnet.ops import export
from mmdwnet.ops.spec import PUBLIC, spec

if TYPE_CHECKING:
    import onnx
    import onnxruntime

__all__ = ['DOMAIN', 'VERSION', 'CustomOp', 'CUSTOM_OPS', 'node_type', 'export_custom_ops',
           'translation_table', 'register_symbolics', 'require_extensions', 'register_kernels',
           'session_options', 'custom_nodes', 'inference_session']

#: the custom-op domain onnxruntime-extensions serves Python custom ops in, and its version
DOMAIN = 'ai.onnx.contrib'
VERSION = 1
INSTALL = ('`pip install onnxruntime-extensions` (or `pip install mmdwnet[deploy]`, '
           '`pip install -r requirements/deploy.txt`)')


@dataclass(frozen=True)
class CustomOp:
    """One custom node type: which operator it calls and how the operator's arguments become
    the node's inputs (tensors) and INT attributes."""

    op_type: str
    name: str  #: the operator, ``torch.ops.mmdwnet.<name>``
    inputs: Tuple[str, ...]
    attributes: Tuple[str, ...] = ()

    @property
    def arguments(self) -> Tuple[str, ...]:
        """The operator's argument names, in its schema's order."""
        return spec(self.name).kinds[0]

    def split(self, args: Sequence) -> Tuple[List, Dict[str, Any]]:
        """(node inputs, {attribute: value}) from the operator's arguments ``args``."""
        values = dict(zip(self.arguments, args))
        return [values[n] for n in self.inputs], {n: values[n] for n in self.attributes}

    def join(self, inputs: Sequence, attributes: Dict[str, Any]) -> List:
        """The operator's arguments from the node's inputs and attributes (the inverse of
        :meth:`split`; an argument that is neither, the absent bias, is None)."""
        values = dict(zip(self.inputs, inputs), **attributes)
        return [values.get(n) for n in self.arguments]


CUSTOM_OPS: Tuple[CustomOp, ...] = (
    CustomOp('MMDWLocalAggregate', 'local_aggregate', ('x', 'weight')),
    CustomOp('MMDWLocalCorrelate', 'local_correlate', ('q', 'k_map'), ('kernel_size', 'groups')),
    CustomOp('MMDWLocalAggregatePointwise', 'local_aggregate_pointwise', ('x', 'feat', 'weight'),
             ('groups', 'kernel_size')),
    CustomOp('MMDWLocalAggregatePointwiseBias', 'local_aggregate_pointwise',
             ('x', 'feat', 'weight', 'bias'), ('groups', 'kernel_size')),
    CustomOp('MMDWDynamicDepthwiseConv2d', 'dynamic_depthwise_conv2d', ('x', 'kernels')),
    CustomOp('MMDWDynamicDepthwiseConv2dBias', 'dynamic_depthwise_conv2d',
             ('x', 'kernels', 'bias')),
)
assert {c.name for c in CUSTOM_OPS} == set(PUBLIC), 'one node type (or two) per public op'


def node_type(name: str, args: Sequence) -> CustomOp:
    """The node type of a call of operator ``name`` with ``args`` (schema order; None for an
    absent bias)."""
    given = {n for n, v in zip(spec(name).kinds[0], args) if v is not None}
    for c in CUSTOM_OPS:
        if c.name == name and given == set(c.inputs + c.attributes):
            return c
    raise ValueError(f'no custom node type for mmdwnet::{name} with arguments {sorted(given)}')


# ----------------------------------------------------------------------------------- export
def _schema(c: CustomOp):
    """ONNX ``OpSchema`` of node type ``c`` (float tensors in and out, INT attributes): what
    onnxscript needs to record the node.  Not registered with onnx."""
    from onnx.defs import OpSchema
    return OpSchema(c.op_type, DOMAIN, VERSION,
                    inputs=[OpSchema.FormalParameter(n, 'T') for n in c.inputs],
                    outputs=[OpSchema.FormalParameter('y', 'T')],
                    type_constraints=[('T', ['tensor(float)'], 'float32')],
                    attributes=[OpSchema.Attribute(n, OpSchema.AttrType.INT, n)
                                for n in c.attributes])


def translation_table() -> Dict[torch._ops.OpOverload, Callable]:
    """``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``: every public
    ``torch.ops.mmdwnet`` operator to its custom node (used inside :func:`export_custom_ops`,
    or on an ``ExportedProgram``, which keeps the operators anyway)."""
    from onnxscript.values import Op, Opset
    opset = Opset(DOMAIN, VERSION)
    nodes = {c.op_type: Op(opset, c.op_type, _schema(c)) for c in CUSTOM_OPS}

    def translation(name: str) -> Callable:
        def translate(*args):
            c = node_type(name, args)
            inputs, attributes = c.split(args)
            return nodes[c.op_type](*inputs, **attributes)
        translate.__name__ = f'mmdwnet_{name}'
        return translate

    return {getattr(torch.ops.mmdwnet, name).default: translation(name) for name in PUBLIC}


def _symbolic(name: str) -> Callable:
    """TorchScript-exporter symbolic of operator ``name``: its custom node."""
    from torch.onnx import symbolic_helper as sh

    def symbolic(g, *args):
        args = [None if sh._is_none(a) else a for a in args]
        c = node_type(name, args)
        inputs, attributes = c.split(args)
        out = g.op(f'{DOMAIN}::{c.op_type}', *inputs,
                   **{f'{n}_i': sh._get_const(v, 'i', n) for n, v in attributes.items()})
        rank = 6 if name == 'local_correlate' else 4  # (N, G, k, k, H, W) or (N, C, H, W)
        return out.setType(inputs[0].type().with_sizes([None] * rank))

    return symbolic


_registered_symbolics = False


def register_symbolics() -> None:
    """Teach the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) the custom
    nodes: ``torch.onnx.register_custom_op_symbolic('mmdwnet::<op>', ...)`` for every public
    operator (once per process; the exporter meets the operators only inside
    :func:`mmdwnet.ops.export.keep_operators`)."""
    global _registered_symbolics
    if not _registered_symbolics:
        for name in PUBLIC:
            torch.onnx.register_custom_op_symbolic(f'mmdwnet::{name}', _symbolic(name), 1)
        _registered_symbolics = True


@contextlib.contextmanager
def export_custom_ops() -> Iterator[Dict[str, Any]]:
    """Within, ``torch.onnx.export`` writes mmdwnet's operators as custom nodes.

    Yields the keyword arguments the export call needs besides: ``custom_opsets`` for the
    TorchScript exporter (its symbolics are registered here), ``custom_translation_table`` for
    the dynamo one; pass the entry of your exporter, e.g.
    ``torch.onnx.export(net, (x, ), dynamo=True, custom_translation_table=
    kw['custom_translation_table'])``.
    """
    register_symbolics()
    with export.keep_operators():
        yield {'custom_opsets': {DOMAIN: VERSION},
               'custom_translation_table': translation_table()}


# ---------------------------------------------------------------------------------- runtime
def require_extensions() -> ModuleType:
    """The ``onnxruntime_extensions`` module; an ImportError saying what to install if absent."""
    try:
        import onnxruntime_extensions
    except ImportError as e:
        raise ImportError('graphs with mmdwnet custom-op nodes run in onnxruntime through '
                          f'onnxruntime-extensions, which is not installed: run {INSTALL}; or '
                          'export a standard-op graph (without --ort-custom-ops), which needs '
                          'nothing but onnxruntime') from e
    return onnxruntime_extensions


def _kernel(c: CustomOp) -> Callable[..., np.ndarray]:
    """Python kernel of node type ``c``: the operator eager PyTorch runs, on zero-copy torch
    views of the node's (float32, contiguous) input arrays; a contiguous float32 array out."""
    op = getattr(torch.ops.mmdwnet, c.name)

    def kernel(*arrays: np.ndarray, **attributes: int) -> np.ndarray:
        inputs = [torch.from_numpy(a) for a in arrays]
        with torch.no_grad():
            out = op(*c.join(inputs, attributes))
        return np.ascontiguousarray(out.numpy())

    kernel.__name__ = c.op_type
    return kernel


_lock = threading.Lock()
_opdefs: Dict[int, Any] = {}  # onnxruntime-extensions' id of each kernel -> its Opdef


def _return_arrays(ext: ModuleType) -> bool:
    """Let mmdwnet's kernels hand their results to onnxruntime-extensions as arrays.

    Its Python-op hook returns every result as ``result.flatten().tolist()`` (a list of Python
    floats, converted back to an array in C++), which for a 1x96x56x56 map costs more than the
    operator itself; its C++ side takes any array.  This installs a hook that returns mmdwnet's
    results flat but as arrays, and passes every other Python op to the library's own hook.
    False (lists: slower, same results) when the library's internals differ from 0.15's.
    """
    ocos = getattr(ext, '_ocos', None)
    default = getattr(ocos, '_on_pyop_invocation', None)
    install = getattr(getattr(ocos, 'PyCustomOpDef', None), 'install_hooker', None)
    if default is None or install is None:
        return False

    def invoke(k_id, feed, attributes):
        opdef = _opdefs.get(k_id)
        if opdef is None:
            return default(k_id, feed, attributes)
        out = opdef.body(*feed, **opdef.cast_attributes(attributes))
        return k_id, out.shape, out.reshape(-1)

    install(invoke)
    return True


def register_kernels() -> ModuleType:
    """Define the Python kernel of every node type with onnxruntime-extensions (once per
    process; a session must be created after it) and return the ``onnxruntime_extensions``
    module.

    Raises:
        ImportError: onnxruntime-extensions is not installed (the message says what to install).
    """
    ext = require_extensions()
    with _lock:
        if not _opdefs:
            f32, i64 = ext.PyCustomOpDef.dt_float, ext.PyCustomOpDef.dt_int64
            for c in CUSTOM_OPS:
                opdef = ext.onnx_op(op_type=c.op_type, inputs=[f32] * len(c.inputs),
                                    outputs=[f32], attrs={n: i64 for n in c.attributes})(_kernel(c))
                _opdefs[id(opdef)] = opdef
            _return_arrays(ext)
    return ext


def session_options(
        options: Optional['onnxruntime.SessionOptions'] = None) -> 'onnxruntime.SessionOptions':
    """``options`` (default: a new ``onnxruntime.SessionOptions``) with mmdwnet's kernels
    defined and the onnxruntime-extensions library registered: pass it to
    ``onnxruntime.InferenceSession`` to run a graph with mmdwnet custom nodes.

    Raises:
        ImportError: onnxruntime-extensions is not installed.
    """
    import onnxruntime as ort
    ext = register_kernels()
    options = options if options is not None else ort.SessionOptions()
    options.register_custom_ops_library(ext.get_library_path())
    return options


#: a serialized ONNX model, the path of a .onnx file, or an ``onnx.ModelProto``
Model = Union[bytes, str, 'onnx.ModelProto']


def custom_nodes(model: Model) -> Dict[str, int]:
    """{node type: count} of the mmdwnet custom nodes in ``model`` (serialized bytes, a file
    path or an ``onnx.ModelProto``; the main graph and its local functions)."""
    import onnx
    if isinstance(model, bytes):
        model = onnx.load_from_string(model)
    elif isinstance(model, str):
        model = onnx.load(model, load_external_data=False)
    types = {c.op_type for c in CUSTOM_OPS}
    counts: Dict[str, int] = {}
    for nodes in [model.graph.node] + [f.node for f in model.functions]:
        for node in nodes:
            if node.domain == DOMAIN and node.op_type in types:
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def inference_session(
        model: Model, options: Optional['onnxruntime.SessionOptions'] = None,
        providers: Sequence[str] = ('CPUExecutionProvider', )) -> 'onnxruntime.InferenceSession':
    """``onnxruntime.InferenceSession`` of ``model`` (bytes, path or ``onnx.ModelProto``), with
    :func:`session_options` when the graph has mmdwnet custom nodes.

    Raises:
        ImportError: the graph has custom nodes and onnxruntime-extensions is not installed.
    """
    import onnxruntime as ort
    if not isinstance(model, (bytes, str)):
        model = model.SerializeToString()
    found = custom_nodes(model)
    if found:
        try:
            options = session_options(options)
        except ImportError as e:
            raise ImportError(f'this ONNX graph has mmdwnet custom-op nodes ({", ".join(found)}); '
                              f'{e}') from e.__cause__
    return ort.InferenceSession(model, options, providers=list(providers))
