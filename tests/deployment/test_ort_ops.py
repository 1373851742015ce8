"""mmdwnet's operators as onnxruntime custom ops (mmdwnet.deployment.ort_ops).

Every node type run by onnxruntime against the standard-op form of its operator; the
D-DWNet, I-D-DWNet and SlidingWindowNet presets (one stage, 7x7 kernels: a decomposition would
be 49 slices per operator) exported with custom nodes by both exporters, against eager PyTorch on
the example batch and on a batch of another size; the hook that hands results to
onnxruntime-extensions as arrays; the error when onnxruntime-extensions is missing; the
``keep_operators`` switch and the export form of the softmax.
"""
import sys
import types
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmdwnet.deployment import onnx as tool
from mmdwnet.deployment import ort_ops
from mmdwnet import ops
from mmdwnet.models.backbones import presets
from mmdwnet.ops import export

onnx = pytest.importorskip('onnx', reason='needs `pip install mmdwnet[deploy]`')
ort = pytest.importorskip('onnxruntime', reason='needs `pip install mmdwnet[deploy]`')
pytest.importorskip('onnxruntime_extensions',
                    reason='custom-op graphs run through onnxruntime-extensions: '
                    '`pip install onnxruntime-extensions` (requirements/deploy.txt)')
from onnx import TensorProto, helper  # noqa: E402

TOL = 1e-4
PRESETS = ('DynamicDWNet', 'IDynamicDWNet', 'SlidingWindowNet')
ARCH = dict(embed_dims=16, depths=[1], num_heads=[2])
# per preset with its default 7x7 kernel: the D-DW conv (with bias), the I-D-DW aggregation
# (with bias), and sliding-window attention's logits and values (its border mask is standard
# ops, ``outside_neighbours``: no custom node of its own)
EXPECTED_NODES = {'MMDWDynamicDepthwiseConv2dBias': 1, 'MMDWLocalAggregatePointwiseBias': 1,
                  'MMDWLocalCorrelate': 1, 'MMDWLocalAggregate': 1}


# ------------------------------------------------------------------------------ node types
def _node_case(op_type, gen):
    """(inputs, attributes, expected) of one node type: expected from the standard-op form."""
    n, c, g, r, k, h, w = 2, 8, 2, 6, 3, 5, 7
    x = torch.randn(n, c, h, w, generator=gen)
    if op_type == 'MMDWLocalAggregate':  # weights shared by the batch (leading size 1)
        weight = torch.randn(1, g, k, k, h, w, generator=gen)
        return dict(x=x, weight=weight), {}, export.local_aggregate(x, weight)
    if op_type == 'MMDWLocalCorrelate':
        key = torch.randn(n, c, h, w, generator=gen)
        return (dict(q=x, k_map=key), dict(kernel_size=k, groups=g),
                export.local_correlate(x, key, k, g))
    if op_type.startswith('MMDWLocalAggregatePointwise'):
        feat = torch.randn(n, r, h, w, generator=gen)
        weight = torch.randn(g * k * k, r, 1, 1, generator=gen)
        bias = torch.randn(g * k * k, generator=gen) if op_type.endswith('Bias') else None
        inputs = dict(x=x, feat=feat, weight=weight, **({} if bias is None else dict(bias=bias)))
        return (inputs, dict(groups=g, kernel_size=k),
                export.local_aggregate_pointwise(x, feat, weight, bias, g, k))
    kernels = torch.randn(n, c, 4, 4, generator=gen)  # D-DW, an even kernel
    bias = torch.randn(c, generator=gen) if op_type.endswith('Bias') else None
    inputs = dict(x=x, kernels=kernels, **({} if bias is None else dict(bias=bias)))
    return inputs, {}, export.dynamic_depthwise_conv2d(x, kernels, bias)


def _single_node_model(op_type, inputs, attributes):
    node = helper.make_node(op_type, list(inputs), ['y'], domain=ort_ops.DOMAIN, **attributes)
    graph = helper.make_graph(
        [node], op_type, [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                          for n in inputs], [helper.make_tensor_value_info('y', TensorProto.FLOAT,
                                                                           None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                   helper.make_opsetid(ort_ops.DOMAIN, 1)])


@pytest.mark.parametrize('op_type', [c.op_type for c in ort_ops.CUSTOM_OPS])
def test_every_node_type_runs_its_operator(op_type):
    inputs, attributes, expected = _node_case(op_type, torch.Generator().manual_seed(0))
    sess = ort_ops.inference_session(_single_node_model(op_type, inputs, attributes))
    got, = sess.run(None, {n: t.numpy() for n, t in inputs.items()})
    assert got.shape == tuple(expected.shape)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_node_type_follows_the_optional_bias():
    x = k = b = object()
    assert ort_ops.node_type('dynamic_depthwise_conv2d', (x, k, None)).op_type == \
        'MMDWDynamicDepthwiseConv2d'
    assert ort_ops.node_type('dynamic_depthwise_conv2d', (x, k, b)).op_type == \
        'MMDWDynamicDepthwiseConv2dBias'
    c = ort_ops.node_type('local_aggregate_pointwise', (x, k, b, None, 3, 7))
    assert c.op_type == 'MMDWLocalAggregatePointwise'
    assert c.split((x, k, b, None, 3, 7)) == ([x, k, b], {'groups': 3, 'kernel_size': 7})
    assert c.join([x, k, b], {'groups': 3, 'kernel_size': 7}) == [x, k, b, None, 3, 7]
    with pytest.raises(ValueError, match='no custom node type'):
        ort_ops.node_type('local_aggregate', (x, None))


def test_results_reach_onnxruntime_as_arrays():
    """The installed hook returns mmdwnet's results as flat arrays (not the library's lists)
    and passes other Python ops to the library's own hook; without that hook: lists."""
    ort_ops.register_kernels()
    hooks = []
    fake = types.SimpleNamespace(_ocos=types.SimpleNamespace(
        _on_pyop_invocation=lambda k_id, feed, attributes: ('library', k_id),
        PyCustomOpDef=types.SimpleNamespace(install_hooker=hooks.append)))
    assert ort_ops._return_arrays(fake)
    k_id, opdef = next((i, d) for i, d in ort_ops._opdefs.items()
                       if d.op_type == 'MMDWLocalCorrelate')
    q = np.random.default_rng(0).standard_normal((1, 4, 5, 6)).astype(np.float32)
    rid, shape, flat = hooks[0](k_id, [q, q], {'kernel_size': '3', 'groups': '2'})
    assert rid == k_id and tuple(shape) == (1, 2, 3, 3, 5, 6)
    assert isinstance(flat, np.ndarray) and flat.dtype == np.float32 and flat.ndim == 1
    expected = export.local_correlate(torch.from_numpy(q), torch.from_numpy(q), 3, 2)
    np.testing.assert_allclose(flat, expected.numpy().ravel(), rtol=1e-5, atol=1e-5)
    assert hooks[0](-1, [], {}) == ('library', -1)
    assert not ort_ops._return_arrays(types.SimpleNamespace())


def test_onnxruntime_calls_go_through_the_array_hook(monkeypatch):
    """onnxruntime's calls reach mmdwnet's hook under the ids it keeps (a wrong id would fall
    back to the library's slow list path, with the same results)."""
    import onnxruntime_extensions
    ort_ops.register_kernels()
    assert ort_ops._return_arrays(onnxruntime_extensions)  # the real library has the hook
    k_id, opdef = next((i, d) for i, d in ort_ops._opdefs.items()
                       if d.op_type == 'MMDWLocalCorrelate')
    calls = []
    spy = types.SimpleNamespace(cast_attributes=opdef.cast_attributes,
                                body=lambda *a, **kw: calls.append(kw) or opdef.body(*a, **kw))
    monkeypatch.setitem(ort_ops._opdefs, k_id, spy)
    inputs, attributes, expected = _node_case('MMDWLocalCorrelate',
                                              torch.Generator().manual_seed(0))
    sess = ort_ops.inference_session(_single_node_model('MMDWLocalCorrelate', inputs,
                                                        attributes))
    got, = sess.run(None, {n: t.numpy() for n, t in inputs.items()})
    assert calls == [attributes]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------- presets
class ThreePresets(nn.Module):
    """D-DWNet, I-D-DWNet and SlidingWindowNet side by side: (N, 3, H, W) -> three stage-1
    feature maps."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbones = nn.ModuleList(
            getattr(presets, name)(arch=ARCH, out_indices=(0, ), drop_path_rate=0.)
            for name in PRESETS)
        for m in self.modules():  # non-trivial BN statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
        self.eval()

    def forward(self, x):
        return tuple(backbone(x)[0] for backbone in self.backbones)


@pytest.fixture(scope='module')
def three():
    model = ThreePresets()
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(2, 3, 224, 224, generator=gen),
              torch.randn(3, 3, 224, 224, generator=gen)]
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    return model, inputs, expected


@pytest.mark.parametrize('exporter', ['dynamo', 'torchscript'])
def test_presets_custom_op_graph_matches_eager(three, exporter):
    if exporter == 'dynamo':
        pytest.importorskip('onnxscript', reason='the dynamo exporter needs onnxscript')
    model, inputs, expected = three
    model_bytes = tool.export_onnx(model, inputs[0], exporter, dynamic=True, custom_ops=True)
    proto = onnx.load_from_string(model_bytes)
    assert ort_ops.custom_nodes(proto) == EXPECTED_NODES
    types_seen = Counter((n.domain or 'ai.onnx', n.op_type) for n in proto.graph.node)
    foreign = {t for t in types_seen if t[0] not in ('ai.onnx', ort_ops.DOMAIN)}
    assert not foreign, f'nodes of other domains: {foreign}'
    # no 49-step decomposition left (a 7x7 one is 49 slices), no Softmax on a middle axis
    assert types_seen[('ai.onnx', 'Slice')] < 49, types_seen
    assert types_seen[('ai.onnx', 'Softmax')] == 0, types_seen

    sess = ort_ops.inference_session(model_bytes)
    name = sess.get_inputs()[0].name
    for x, exp in zip(inputs, expected):
        got = sess.run(None, {name: x.numpy()})
        for preset, g, e in zip(PRESETS, got, exp):
            diff = float(np.abs(g - e.numpy()).max())
            assert g.shape == tuple(e.shape) and diff <= TOL, f'{preset}: {diff}'
    for p in range(len(PRESETS)):  # the two inputs differ, so a frozen graph would fail
        assert (expected[0][p][:1] - expected[1][p][:1]).abs().max() > 1e-2


class _Aggregate(nn.Module):
    """local_aggregate with weights generated from the input (no parameters)."""

    def forward(self, x):
        n, c, h, w = x.shape
        return ops.local_aggregate(x, x[:, :2].repeat(1, 9, 1, 1).view(n, 2, 3, 3, h, w))


def test_exported_program_translates_to_custom_nodes():
    """An ExportedProgram keeps the mmdwnet nodes; translation_table() writes them as custom
    nodes (no decomposition needed)."""
    pytest.importorskip('onnxscript', reason='the dynamo exporter needs onnxscript')
    x, x2 = torch.randn(2, 4, 6, 7), torch.randn(3, 4, 6, 7)
    batch = torch.export.Dim('batch', min=1, max=64)
    program = torch.export.export(_Aggregate(), (x, ), dynamic_shapes=({0: batch}, ))
    onnx_program = torch.onnx.export(program, dynamo=True, verbose=False,
                                     custom_translation_table=ort_ops.translation_table())
    assert ort_ops.custom_nodes(onnx_program.model_proto) == {'MMDWLocalAggregate': 1}
    sess = ort_ops.inference_session(onnx_program.model_proto)
    for inp in (x, x2):
        got, = sess.run(None, {sess.get_inputs()[0].name: inp.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), _Aggregate()(inp), rtol=1e-5,
                                   atol=1e-5)


def test_standard_graph_needs_no_extensions_and_custom_graph_says_what_to_install(
        three, monkeypatch):
    model, inputs, _ = three
    x = inputs[0][:1]
    standard = tool.export_onnx(model, x, 'torchscript', dynamic=False)
    custom = tool.export_onnx(model, x, 'torchscript', dynamic=False, custom_ops=True)
    with pytest.raises(Exception, match='MMDW'):  # onnxruntime alone cannot run it
        ort.InferenceSession(custom, providers=['CPUExecutionProvider'])

    monkeypatch.setitem(sys.modules, 'onnxruntime_extensions', None)  # "not installed"
    assert ort_ops.custom_nodes(standard) == {}
    sess = ort_ops.inference_session(standard)
    assert max(tool.compare(model, sess, [x])) <= TOL
    with pytest.raises(ImportError) as exc:
        ort_ops.inference_session(custom)
    message = str(exc.value)
    assert 'pip install onnxruntime-extensions' in message
    assert 'MMDWLocalCorrelate' in message and '--ort-custom-ops' in message
    with pytest.raises(ImportError, match='pip install onnxruntime-extensions'):
        ort_ops.session_options()
    with pytest.raises(ImportError, match='pip install onnxruntime-extensions'):
        tool.check_requirements('torchscript', custom_ops=True)
    tool.check_requirements('torchscript')  # standard-op graphs: not needed


# ------------------------------------------------------------------------- export switches
def test_keep_operators_switches_the_decompositions_off(monkeypatch):
    monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
    assert export.exporting()
    with pytest.raises(RuntimeError):
        with export.keep_operators():
            assert not export.exporting()
            with export.keep_operators():
                assert not export.exporting()
            assert not export.exporting()
            raise RuntimeError
    assert export.exporting()  # restored, also after an exception


def test_softmax_export_form(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 4, 5, generator=gen) * 10
    x[:, :, :4, 0, 0] = float('-inf')  # a masked neighbourhood: finite entries left
    expected = x.softmax(dim=2)
    monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
    got = export.softmax(x, 2)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert (got[:, :, :4, 0, 0] == 0).all()

    def no_softmax(*args, **kwargs):
        raise AssertionError('the export form calls softmax')

    monkeypatch.setattr(torch.Tensor, 'softmax', no_softmax)
    torch.testing.assert_close(export.softmax(x, 2), expected, rtol=1e-6, atol=1e-7)


def test_onnx_speed_times_three_runners(monkeypatch):
    """tools/deployment/onnx_speed.py's measure(): a standard-op and a custom-op graph, both
    checked, three timings."""
    from script_loading import load_script
    onnx_speed = load_script('tools/deployment/onnx_speed.py')
    opened, open_session = [], ort_ops.inference_session

    def spy(model, *args, **kwargs):
        opened.append(ort_ops.custom_nodes(model))
        return open_session(model, *args, **kwargs)

    monkeypatch.setattr(ort_ops, 'inference_session', spy)
    arch = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
    diffs, ms = onnx_speed.measure('IDynamicDWNet', arch, 224, rounds=1, threads=1,
                                   exporter='torchscript')
    assert opened == [{}, {'MMDWLocalAggregatePointwiseBias': 4}]
    assert set(diffs) == {'standard', 'custom'} and max(diffs.values()) <= TOL
    assert set(ms) == {'torch', 'standard', 'custom'} and min(ms.values()) > 0
