"""Export of every preset: TorchScript ONNX exporter, dynamo ONNX exporter, torch.export.

Every preset (small: one stage of two blocks, so shifted windows are covered) is exported at
224x224 (classification behaviour) and at 200x264 with ``pad_to_window=True``, with a dynamic
batch; onnxruntime (or the ExportedProgram) must match eager PyTorch within 1e-4 on the example
batch *and* on a second, different batch of another size, which a graph with an aggregation
frozen into a constant (the old TorchScript-exporter bug) fails.  To keep the suite short, the
six presets are exported together as one module with six outputs, one export per exporter and
size; failures name the preset.
"""
import io

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmdwnet import ops
from mmdwnet.models.backbones import presets
from mmdwnet.ops import export

onnx = pytest.importorskip('onnx', reason='ONNX export tests need `pip install mmdwnet[deploy]`')
ort = pytest.importorskip('onnxruntime',
                          reason='ONNX export tests need `pip install mmdwnet[deploy]`')

PRESETS = ('DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet',
           'LocalMLPNet')
# One stage; two blocks where the second one differs (shifted windows), else one.
ARCH = dict(embed_dims=16, depths=[1], num_heads=[2])
DEPTH = dict(SwinNet=2, LocalMLPNet=2)
# 3x3 neighbourhoods keep the decomposed graphs small (9 offsets instead of 49); the
# decompositions are the same code for every k (k = 3, 4 and 7 are checked directly below).
KERNEL = dict(DWNet=3, DynamicDWNet=3, IDynamicDWNet=3, SlidingWindowNet=3)
SIZES = {'224': ((224, 224), False), 'odd': ((200, 264), True)}
TOL = 1e-4
MMDWNET_OPS = ('local_aggregate', 'local_aggregate_pointwise', 'local_correlate',
               'dynamic_depthwise_conv2d')


class AllPresets(nn.Module):
    """The six presets side by side: (N, 3, H, W) -> six (N, C, H/4, W/4) outputs."""

    def __init__(self, size, pad_to_window):
        super().__init__()
        torch.manual_seed(0)
        self.backbones = nn.ModuleList(
            getattr(presets, name)(arch=dict(ARCH, depths=[DEPTH.get(name, 1)]),
                                   out_indices=(0, ), drop_path_rate=0.,
                                   img_size=size, pad_to_window=pad_to_window,
                                   mixer=dict(kernel_size=KERNEL[name]) if name in KERNEL else None)
            for name in PRESETS)
        for m in self.modules():  # non-trivial BN statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
        self.eval()

    def forward(self, x):
        return tuple(backbone(x)[0] for backbone in self.backbones)


@pytest.fixture(scope='module', params=list(SIZES))
def case(request):
    size, pad = SIZES[request.param]
    model = AllPresets(size, pad)
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(2, 3, *size, generator=gen), torch.randn(3, 3, *size, generator=gen)]
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    return model, inputs, expected, size


def _compare(outputs_per_input, expected_per_input):
    """Per preset: max |diff| against eager over both inputs; a list of failure messages."""
    failures = []
    for p, name in enumerate(PRESETS):
        diffs = [float(np.abs(np.asarray(got[p]) - exp[p].numpy()).max())
                 for got, exp in zip(outputs_per_input, expected_per_input)]
        if not max(diffs) <= TOL:
            failures.append(f'{name}: max |exported - eager| per input = {diffs}')
        a, b = expected_per_input[0][p][:1], expected_per_input[1][p][:1]
        assert (a - b).abs().max() > 1e-2, f'{name}: the two test inputs give the same output'
    return failures


def _check_onnx(model_proto, size):
    """Only standard-domain ops, and no constant of a feature map's spatial size other than a
    0/1 mask (the neighbourhood-inside-the-map mask of sliding-window attention): a frozen
    aggregation result or generated kernel would be one."""
    ops_seen = {(n.domain or 'ai.onnx', n.op_type) for n in model_proto.graph.node}
    foreign = sorted(o for o in ops_seen if o[0] not in ('ai.onnx', ''))
    assert not foreign, f'non-standard ONNX ops in the graph: {foreign}'
    spatial = (-(-size[0] // 4), -(-size[1] // 4))
    consts = list(model_proto.graph.initializer)
    for node in model_proto.graph.node:
        if node.op_type == 'Constant':
            consts += [a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR]
    frozen = [(c.name, tuple(c.dims)) for c in consts
              if len(c.dims) >= 2 and tuple(c.dims[-2:]) == spatial
              and not np.isin(onnx.numpy_helper.to_array(c), (0, 1)).all()]
    assert not frozen, f'constants of the feature-map size {spatial} in the graph: {frozen}'


def _run_onnx(model_bytes, inputs):
    sess = ort.InferenceSession(model_bytes, providers=['CPUExecutionProvider'])
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: x.numpy()}) for x in inputs]


def test_torchscript_onnx_export_matches_eager(case):
    model, inputs, expected, size = case
    f = io.BytesIO()
    torch.onnx.export(model, (inputs[0], ), f, dynamo=False, opset_version=17,
                      input_names=['input'], dynamic_axes={'input': {0: 'batch'}})
    proto = onnx.load_from_string(f.getvalue())
    _check_onnx(proto, size)
    failures = _compare(_run_onnx(f.getvalue(), inputs), expected)
    assert not failures, '\n'.join(failures)


def test_dynamo_onnx_export_matches_eager(case):
    pytest.importorskip('onnxscript', reason='torch.onnx.export(dynamo=True) needs onnxscript')
    model, inputs, expected, size = case
    batch = torch.export.Dim('batch', min=1, max=64)
    program = torch.onnx.export(model, (inputs[0], ), dynamo=True, verbose=False,
                                dynamic_shapes=({0: batch}, ))
    _check_onnx(program.model_proto, size)
    failures = _compare(_run_onnx(program.model_proto.SerializeToString(), inputs), expected)
    assert not failures, '\n'.join(failures)


def test_torch_export_keeps_ops_and_matches_eager(case):
    model, inputs, expected, size = case
    batch = torch.export.Dim('batch', min=1, max=64)
    program = torch.export.export(model, (inputs[0], ), dynamic_shapes=({0: batch}, ))
    targets = {str(n.target) for n in program.graph.nodes}
    for op in MMDWNET_OPS:
        assert f'mmdwnet.{op}.default' in targets, f'torch.export lost the mmdwnet::{op} node'
    module = program.module()
    with torch.no_grad():
        failures = _compare([module(x) for x in inputs], expected)
    assert not failures, '\n'.join(failures)
    if size != SIZES['odd'][0]:
        return  # the decomposition table once is enough (it retraces the whole program)
    decomposed = program.run_decompositions(export.decompositions())
    assert not [t for t in (str(n.target) for n in decomposed.graph.nodes) if 'mmdwnet' in t]
    module = decomposed.module()
    with torch.no_grad():
        failures = _compare([module(x) for x in inputs], expected)
    assert not failures, '\n'.join(failures)


# ------------------------------------------------------------------------ the decompositions
def _shifted_reference(x, k):
    """(N, C, k*k, H, W) neighbourhoods by F.unfold, padding (k-1)//2 before and k//2 after."""
    n, c, h, w = x.shape
    xp = F.pad(x, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2))
    return F.unfold(xp, k).view(n, c, k * k, h, w)


@pytest.mark.parametrize('k', [3, 4, 7])
@pytest.mark.parametrize('shared', [False, True])
def test_local_aggregate_decomposition(k, shared):
    gen = torch.Generator().manual_seed(k)
    n, c, g, h, w = 2, 8, 4, 9, 11
    x = torch.randn(n, c, h, w, generator=gen)
    weight = torch.randn(1 if shared else n, g, k, k, h, w, generator=gen)
    cols = _shifted_reference(x, k).view(n, g, c // g, k * k, h, w)
    ref = (cols * weight.reshape(-1, g, 1, k * k, h, w)).sum(3).view(n, c, h, w)
    got = export.local_aggregate(x, weight)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, ops.local_aggregate(x, weight), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('k', [3, 4])
def test_local_correlate_decomposition(k):
    gen = torch.Generator().manual_seed(k)
    n, c, g, h, w = 2, 8, 2, 7, 10
    q, key = torch.randn(2, n, c, h, w, generator=gen)
    cols = _shifted_reference(key, k).view(n, g, c // g, k * k, h, w)
    ref = (q.view(n, g, c // g, 1, h, w) * cols).sum(2).view(n, g, k, k, h, w)
    got = export.local_correlate(q, key, k, g)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, ops.local_correlate(q, key, k, g), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('k', [3, 4])
def test_pointwise_and_dynamic_depthwise_decompositions(k):
    gen = torch.Generator().manual_seed(k)
    n, c, g, r, h, w = 2, 8, 4, 6, 9, 7
    x = torch.randn(n, c, h, w, generator=gen)
    feat = torch.randn(n, r, h, w, generator=gen)
    weight = torch.randn(g * k * k, r, 1, 1, generator=gen)
    bias = torch.randn(g * k * k, generator=gen)
    kernels = F.conv2d(feat, weight, bias).view(n, g, k, k, h, w)
    torch.testing.assert_close(export.local_aggregate_pointwise(x, feat, weight, bias, g, k),
                               export.local_aggregate(x, kernels), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(export.local_aggregate_pointwise(x, feat, weight, bias, g, k),
                               ops.local_aggregate_pointwise(x, feat, weight, bias, g, k),
                               rtol=1e-5, atol=1e-5)

    ddw = torch.randn(n, c, k, k, generator=gen)
    cbias = torch.randn(c, generator=gen)
    xp = F.pad(x, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2))
    ref = torch.cat([F.conv2d(xp[i:i + 1], ddw[i].unsqueeze(1), cbias, groups=c)
                     for i in range(n)])  # one ordinary depth-wise conv per image
    torch.testing.assert_close(export.dynamic_depthwise_conv2d(x, ddw, cbias), ref,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(export.dynamic_depthwise_conv2d(x, ddw),
                               ref - cbias.view(1, -1, 1, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(export.dynamic_depthwise_conv2d(x, ddw, cbias),
                               ops.dynamic_depthwise_conv2d(x, ddw, cbias), rtol=1e-5, atol=1e-5)


def test_exporting_is_false_in_eager():
    assert not export.exporting()


def test_small_ddwnet_torchscript_export_with_dynamic_batch():
    """Issue 19's failing case: D-DWNet embed 16, depths 1-1-1-1 through the TorchScript
    exporter ("convolution for kernel of unknown shape")."""
    torch.manual_seed(0)
    model = presets.DynamicDWNet(arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                                           num_heads=[1, 2, 4, 8]), drop_path_rate=0.).eval()
    x, x2 = torch.randn(1, 3, 224, 224), torch.randn(2, 3, 224, 224)
    f = io.BytesIO()
    torch.onnx.export(model, (x, ), f, dynamo=False, opset_version=17, input_names=['input'],
                      dynamic_axes={'input': {0: 'batch'}})
    for inp, got in zip((x, x2), _run_onnx(f.getvalue(), (x, x2))):
        with torch.no_grad():
            ref = model(inp)[0].numpy()
        assert np.abs(got[0] - ref).max() <= TOL


class _Aggregate(nn.Module):
    """local_aggregate with weights generated from the input (the I-D-DW pattern, no params)."""

    def forward(self, x):
        n, c, h, w = x.shape
        return ops.local_aggregate(x, x[:, :2].repeat(1, 9, 1, 1).view(n, 2, 3, 3, h, w))


def test_onnx_of_an_exported_program_refuses_custom_ops_then_decomposes():
    """An ExportedProgram keeps the mmdwnet nodes; the ONNX exporter refuses them (no silent
    graph) and exports them after run_decompositions(decompositions())."""
    pytest.importorskip('onnxscript', reason='torch.onnx.export(dynamo=True) needs onnxscript')
    x, x2 = torch.randn(2, 4, 6, 7), torch.randn(2, 4, 6, 7)
    program = torch.export.export(_Aggregate(), (x, ))
    with pytest.raises(Exception, match='mmdwnet'):
        torch.onnx.export(program, dynamo=True, verbose=False)
    onnx_program = torch.onnx.export(program.run_decompositions(export.decompositions()),
                                     dynamo=True, verbose=False)
    (got, ), (got2, ) = _run_onnx(onnx_program.model_proto.SerializeToString(), (x, x2))
    torch.testing.assert_close(torch.from_numpy(got), _Aggregate()(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(got2), _Aggregate()(x2), rtol=1e-5, atol=1e-5)
