"""Issue 29 item 5: ``import mmdwnet`` changes nothing in the host process but its registrations.

A subprocess first imports every third-party module that ``import mmdwnet`` pulls in (so their
own import-time registrations are not counted), records what mmdwnet used to patch --
mmengine's checkpoint loaders and FLOP-op table, ``torch._inductor.ir.get_stride_order``,
``torch.cuda.set_device``, ``torch.load``, torch's safe globals and module-registration hooks --
and every registry of mmengine's root tree, imports mmdwnet, and records again. Everything must
be unchanged except the registrations pinned here: each mmdwnet module once in the root
``MODELS`` (no entry replaced), the ``mmdwnet`` scope node, mmdwnet's two hooks in the root
``HOOKS``, and its dataset and metric in mmpretrain's registries.
"""
import json
import subprocess
import sys

PROBE = r'''
import json, sys
third_party = json.loads(open(sys.argv[1]).read())
import importlib
for name in third_party:
    try:
        importlib.import_module(name)
    except Exception:
        pass

import torch
import torch._inductor.ir as ir
import torch.nn.modules.module as torch_module
from mmengine.analysis import complexity_analysis
from mmengine.registry import MODELS
from mmengine.runner.checkpoint import CheckpointLoader


def ident(obj):
    return f'{getattr(obj, "__module__", "?")}.{getattr(obj, "__qualname__", repr(obj))}:{id(obj)}'


def registries(root_names=('MODELS', 'HOOKS', 'DATASETS', 'METRICS', 'TRANSFORMS',
                           'RUNNERS', 'OPTIMIZERS', 'VISUALIZERS')):
    import mmengine.registry as reg
    out = {}

    def walk(registry, path):
        out[path] = {'entries': {k: ident(v) for k, v in registry.module_dict.items()},
                     'children': sorted(registry.children)}
        for scope, child in registry.children.items():
            walk(child, f'{path}/{scope}')

    for name in root_names:
        walk(getattr(reg, name), name)
    return out


def snapshot():
    return {
        'loaders': {k: ident(v) for k, v in CheckpointLoader._schemes.items()},
        'flop_ops': {k: ident(v)
                     for k, v in complexity_analysis._DEFAULT_SUPPORTED_FLOP_OPS.items()},
        'get_stride_order': ident(ir.get_stride_order),
        'set_device': ident(torch.cuda.set_device),
        'torch_load': ident(torch.load),
        'safe_globals': sorted(map(str, torch.serialization.get_safe_globals())),
        'registration_hooks': len(torch_module._global_module_registration_hooks),
        'registries': registries(),
    }


before = snapshot()
import mmdwnet
from mmdwnet.registry import registered_names
after = snapshot()
# building a backbone, and a classifier holding it, registers no process-wide hook either
from mmengine.registry import MODELS
MODELS.build(dict(type='mmpretrain.ImageClassifier',
                  backbone=dict(type='DWNet', arch=dict(embed_dims=8, depths=[1, 1, 1, 1],
                                                        num_heads=[1, 1, 1, 1])),
                  neck=dict(type='mmpretrain.GlobalAveragePooling'),
                  head=dict(type='mmpretrain.LinearClsHead', num_classes=2, in_channels=64)))
built = {'registration_hooks': len(torch_module._global_module_registration_hooks),
         'hooks': {name: len(getattr(torch_module, name))
                   for name in dir(torch_module) if name.startswith('_global_')
                   and isinstance(getattr(torch_module, name), dict)}}
print(json.dumps(dict(before=before, after=after, names=registered_names(), built=built)))
'''

LIST_IMPORTS = ('import sys, json; import mmdwnet; print(json.dumps(sorted(m for m in sys.modules '
                "if not m.startswith('mmdwnet') and not m.startswith('__'))))")


def _run(code, *args):
    proc = subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_mmdwnet_changes_nothing_but_its_registrations(tmp_path):
    (tmp_path / 'modules.json').write_text(json.dumps(_run(LIST_IMPORTS)))
    out = _run(PROBE, str(tmp_path / 'modules.json'))
    before, after, names = out['before'], out['after'], out['names']
    for key in ('loaders', 'flop_ops', 'get_stride_order', 'set_device', 'torch_load',
                'safe_globals', 'registration_hooks'):
        assert after[key] == before[key], key
    assert out['built']['registration_hooks'] == before['registration_hooks']
    assert all(n == 0 for n in out['built']['hooks'].values()), out['built']['hooks']

    added = {}
    for path, node in after['registries'].items():
        old = before['registries'].get(path, {'entries': {}, 'children': []})
        for name, obj in old['entries'].items():
            assert node['entries'].get(name) == obj, f'{path}: {name} replaced'
        new_entries = sorted(set(node['entries']) - set(old['entries']))
        new_children = sorted(set(node['children']) - set(old['children']))
        if new_entries or new_children:
            added[path] = (new_entries, new_children)
    # the mmdwnet scope node holds no entries; its one child is the MIXERS registry
    # (mmdwnet.models.mixers.MIXERS), which lists the mixers a second time under their own kind
    assert after['registries']['MODELS/mmdwnet'] == {'entries': {}, 'children': ['mmdwnet']}
    mixers, mixer_children = added.pop('MODELS/mmdwnet/mmdwnet')
    assert mixer_children == [] and mixers and set(mixers) <= set(names), mixers
    assert 'DWConv' in mixers and 'DWNet' not in mixers
    assert added == {
        'MODELS': (sorted(names), ['mmdwnet']),  # once, in the root; the mmdwnet scope node
        'MODELS/mmdwnet': ([], ['mmdwnet']),  # MIXERS, the mixers' own registry
        'HOOKS': (['CompileModulesHook', 'ExactResumeHook', 'SafeLoadingHook'], []),
        'DATASETS/mmpretrain': (['ImageNetFolder'], []),
        'TRANSFORMS/mmpretrain': (['PaintOnPhoto'], []),  # the digits pretraining's transform
        'METRICS/mmpretrain': (['ReaLAccuracy'], []),
    }, added
    assert all(after['registries']['MODELS']['entries'][n].startswith('mmdwnet.') for n in names)
