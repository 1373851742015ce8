"""The ops' layout of issue #29: specs drive everything, backends are pluggable.

* every op spec's decomposition (standard PyTorch ops) equals every backend here, forward and
  (for the differentiable ops) both gradients, on random inputs with odd sizes and odd/even k;
* a third-party backend registered with ``register_backend`` that implements only
  ``local_aggregate`` is chosen by name and, under ``auto``, by priority; its missing ops (the
  backward ones) run on the reference backend;
* ``mmdwnet.ops`` depends on torch only: importing it (without the ``mmdwnet`` package's own
  ``__init__``, which registers the models) loads neither mmengine, mmcv nor mmdwnet.models.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmdwnet.ops import backends, local_aggregate
from mmdwnet.ops.backends import Backend, cpu, register_backend, unregister_backend
from mmdwnet.ops.spec import SPECS, spec
from mmdwnet.ops.switches import use_ops_backend

ROOT = Path(__file__).resolve().parents[2]


def _t(*shape, seed=[0]):
    seed[0] += 1
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed[0]))


def _samples(k):
    """Arguments of every op (N=2, C=6, H=5, W=7, G=3, R=4, kernel k)."""
    n, c, h, w, g, r = 2, 6, 5, 7, 3, 4
    x, grad = _t(n, c, h, w), _t(n, c, h, w)
    feat, pw, pb = _t(n, r, h, w), _t(g * k * k, r, 1, 1), _t(g * k * k)
    kern, db = _t(n, c, k, k), _t(c)
    return {
        'local_aggregate': [(x, _t(n, g, k, k, h, w)), (x, _t(1, g, k, k, h, w))],
        'local_scatter': [(grad, _t(n, g, k, k, h, w))],
        'local_correlate': [(x, _t(n, c, h, w), k, g)],
        'local_aggregate_pointwise': [(x, feat, pw, pb, g, k), (x, feat, pw, None, g, k)],
        'local_aggregate_pointwise_backward': [(grad, x, feat, pw, pb, g, k),
                                               (grad, x, feat, pw, None, g, k)],
        'dynamic_depthwise_conv2d': [(x, kern, db), (x, kern, None)],
        'dynamic_depthwise_conv2d_backward': [(grad, x, kern, db), (grad, x, kern, None)],
    }


def _available_backends():
    names = ['reference']
    if cpu.available():
        names.append('openmp')
    return names


def _close(got, want, tol=1e-4):
    got = got if isinstance(got, tuple) else (got, )
    want = want if isinstance(want, tuple) else (want, )
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        scale = max(1., b.abs().max().item()) if b.numel() else 1.
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale)


def test_every_op_has_a_spec_and_a_sample():
    ops = {s.name for s in SPECS}
    assert ops == set(_samples(3))
    for s in SPECS:
        assert hasattr(torch.ops.mmdwnet, s.name)
        assert str(getattr(torch.ops.mmdwnet, s.name).default._schema) == s.qualname + s.schema


@pytest.mark.parametrize('name', _available_backends())
@pytest.mark.parametrize('k', [3, 4])
def test_backends_equal_the_spec_decompositions(name, k):
    for op_name, calls in _samples(k).items():
        s = spec(op_name)
        op = getattr(torch.ops.mmdwnet, op_name)
        for args in calls:
            with use_ops_backend(name):
                assert backends.select(op_name, *[a for a in args
                                                  if isinstance(a, torch.Tensor)]).name in (
                    name, 'reference')
                got = op(*args)
            _close(got, s.decomposition(*args))
            if not s.public:
                continue
            # gradients through the op (its backward ops on this backend) and the decomposition
            leaves = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a
                      for a in args]
            tensors = [a for a in leaves if isinstance(a, torch.Tensor)]
            with use_ops_backend(name):
                out = op(*leaves)
                cot = _t(*out.shape)
                got = torch.autograd.grad(out, tensors, cot)
            want = torch.autograd.grad(s.decomposition(*leaves), tensors, cot)
            _close(got, want)


class ForwardOnly(Backend):
    """A third-party backend: only local_aggregate, on CPU, counting its calls."""

    name = 'forward_only_test'
    devices = ('cpu', )
    priority = 1000

    def __init__(self):
        self.calls = 0

    def local_aggregate(self, x, weight):
        self.calls += 1
        return spec('local_aggregate').decomposition(x, weight)


@pytest.fixture
def third_party():
    backend = register_backend(ForwardOnly())
    yield backend
    unregister_backend(backend.name)


@pytest.mark.parametrize('choice', ['by_name', 'by_priority'])
def test_third_party_backend_with_only_a_forward(third_party, choice, monkeypatch):
    monkeypatch.setenv('MMDWNET_OPS_BACKEND', 'forward_only_test' if choice == 'by_name'
                       else 'auto')
    x, w = _t(2, 4, 5, 6).requires_grad_(), _t(2, 2, 3, 3, 5, 6).requires_grad_()
    assert backends.select('local_aggregate', x, w) is third_party
    for op in ('local_scatter', 'local_correlate', 'local_aggregate_pointwise'):
        assert backends.select(op, x, w) is not third_party  # not implemented: others run it
    assert backends.select('local_scatter', x, w).name == (
        'reference' if choice == 'by_name' or not cpu.available() else 'openmp')
    out = local_aggregate(x, w)
    assert third_party.calls == 1
    gx, gw = torch.autograd.grad(out, (x, w), torch.ones_like(out))
    assert third_party.calls == 1  # the backward ops ran elsewhere
    with use_ops_backend('reference'):
        want = torch.autograd.grad(local_aggregate(x, w), (x, w), torch.ones_like(out))
    _close((out, gx, gw), (spec('local_aggregate').decomposition(x, w), *want))


def test_backend_names_and_registration_errors(third_party):
    assert backends.get('torch') is backends.get('reference')  # old values stay aliases
    assert backends.get('cpu') is backends.get('openmp') is cpu.BACKEND
    assert 'forward_only_test' in backends.backend_names()
    with use_ops_backend('forward_only_test'):
        pass
    with pytest.raises(ValueError, match='already registered'):
        register_backend(ForwardOnly())
    for bad in ('cpu', 'cuda', 'torch', 'auto', ''):
        backend = ForwardOnly()
        backend.name = bad
        with pytest.raises(ValueError, match='not auto, a device name or an alias'):
            register_backend(backend)
    with pytest.raises(ValueError, match='not a known ops backend'):
        with use_ops_backend('no_such_backend'):
            pass


ISOLATED = r'''
import importlib.util, sys, types
root = sys.argv[1]
package = types.ModuleType('mmdwnet')  # the package without its __init__ (which builds models)
package.__path__ = [root + '/mmdwnet']
sys.modules['mmdwnet'] = package
import torch
import mmdwnet.ops
from mmdwnet.ops import backends, export, library, spec, switches  # noqa: F401
x = torch.randn(1, 2, 3, 3)
mmdwnet.ops.local_aggregate(x, torch.randn(1, 1, 3, 3, 3, 3))
loaded = sorted(m for m in sys.modules
                if m.split('.')[0] in ('mmengine', 'mmcv', 'mmpretrain', 'mmdet', 'mmseg')
                or m.startswith('mmdwnet.models'))
print(loaded)
'''


def test_ops_depend_on_torch_only():
    proc = subprocess.run([sys.executable, '-c', ISOLATED, str(ROOT)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == '[]'


def test_no_import_cycle_in_ops():
    """No module of mmdwnet.ops imports (directly or not) a module that imports it back (the
    implicit import of a parent package is not counted; an explicit ``from . import pkg`` is)."""
    import ast
    folder = ROOT / 'mmdwnet' / 'ops'
    sources = {}
    for path in folder.rglob('*.py'):
        rel = path.relative_to(ROOT).with_suffix('')
        name = '.'.join(rel.parts[:-1] if rel.name == '__init__' else rel.parts)
        sources[name] = path
    graph = {}
    for name, path in sources.items():
        package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            for alias in node.names:
                sub = f'{target}.{alias.name}'
                deps.add(sub if sub in sources else target)
        graph[name] = {d for d in deps if d in sources and d != name}

    def reaches(start, goal, seen):
        for d in graph[start]:
            if d == goal:
                return True
            if d not in seen:
                seen.add(d)
                if reaches(d, goal, seen):
                    return True
        return False

    assert 'mmdwnet.ops.library' in graph and graph['mmdwnet.ops.library']
    cycles = [m for m in graph if reaches(m, m, set())]
    assert cycles == [], cycles
