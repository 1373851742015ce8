"""torch.compile / torch.export see through the mmdwnet ops (issue 19.4): every preset exports
with torch.export (the ops stay single mmdwnet:: nodes, shapes from their fake impls); the
presets built on the ops compile with fullgraph=True in eval mode and train compiled with dynamic
shapes (forward + backward, optimiser steps) with losses equal to eager.

Compilation uses the ``aot_eager`` backend (dynamo + fake tensors + AOT autograd with symbolic
shapes: everything the ops must support) because inductor's C++ code generation takes minutes
per model on this CPU; one inductor run covers the I-D-DW backbone in eval mode."""
import pytest
import torch

import mmdwnet  # noqa: F401
from mmdwnet.registry import MODELS

pytestmark = pytest.mark.slow  # tracing and compiling: 10-30 s per model on a small CPU

TINY = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
PRESETS = ['DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet', 'LocalMLPNet']
# compiled here: the presets built on the mmdwnet ops (the others compiled the same way once,
# taking 2-5 minutes each on this shared 2-core machine; tests/test_amp.py runs them eagerly)
OP_PRESETS = ['DynamicDWNet', 'IDynamicDWNet', 'SlidingWindowNet']
MIXER = dict(SwinNet=dict(window_size=1), LocalMLPNet=dict(window_size=1))


def _build(preset, seed=0):
    torch.manual_seed(seed)
    return MODELS.build(dict(type=preset, arch=TINY, img_size=32, drop_path_rate=0.,
                             mixer=MIXER.get(preset)))


def _close(a, b, tol=1e-4):
    return all((x - y).abs().max().item() <= tol * max(1., y.abs().max().item())
               for x, y in zip(a, b))


@pytest.mark.parametrize('preset', PRESETS)
def test_export_and_fullgraph_eval(preset):
    torch._dynamo.reset()
    model = _build(preset).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    program = torch.export.export(model, (x, ))
    nodes = [str(n.target) for n in program.graph.nodes if n.op == 'call_function']
    ops = {'DynamicDWNet': 'mmdwnet.dynamic_depthwise_conv2d',
           'IDynamicDWNet': 'mmdwnet.local_aggregate_pointwise',
           'SlidingWindowNet': 'mmdwnet.local_correlate'}
    if preset in ops:
        assert any(n.startswith(ops[preset]) for n in nodes), nodes
    x2 = torch.randn(2, 3, 32, 32)  # not a constant graph
    with torch.no_grad():
        assert _close(program.module()(x2), model(x2))
        if preset in OP_PRESETS:
            assert _close(torch.compile(model, fullgraph=True, backend='aot_eager')(x), ref)


@pytest.mark.parametrize('preset', OP_PRESETS)
def test_compiled_dynamic_training_equals_eager(preset):
    torch._dynamo.reset()
    eager, compiled = _build(preset).train(), _build(preset).train()
    step = torch.compile(compiled, dynamic=True, backend='aot_eager')
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (eager, compiled)]
    sizes = [32, 32] if preset == 'LocalMLPNet' else [32, 40]  # LocalMLP: fixed img_size
    for size in sizes:
        x = torch.randn(2, 3, size, size)
        losses = []
        for model, opt in zip((eager, step), opts):
            loss = sum(o.square().mean() for o in model(x))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert abs(losses[0] - losses[1]) <= 1e-4 * max(1., abs(losses[0])), losses
    assert _close(list(compiled.parameters()), list(eager.parameters()))


def test_inductor_fullgraph_eval_i_dynamic_dwnet():
    torch._dynamo.reset()
    model = _build('IDynamicDWNet').eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _close(torch.compile(model, fullgraph=True)(x), model(x))
