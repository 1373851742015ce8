"""Issue 31 item 1: every checkpoint read goes through the weights-only gate, every URL scheme.

Each scheme of mmengine's ``CheckpointLoader`` (enumerated when the tests are collected, so a
scheme mmengine adds later fails here until it has a recipe) gets a URI that reaches a poisoned
file: its pickle calls ``open(marker, 'w')``. Hub-cache schemes (``http(s)``, ``torchvision``,
``modelzoo``, ``open-mmlab``, ``mmcls``) find the file in ``$TORCH_HOME/hub/checkpoints``
(mmengine resolves their names through its json tables to URLs whose basename is the cache
file name: no network); ``pavi`` and ``s3``/``petrel`` get a fake client that hands over the
file. Under :func:`mmdwnet.utils.safe_loading` the load is refused and the marker never appears;
the control -- the same URI without the gate -- creates the marker, so each recipe really reaches
``torch.load``. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set throughout, as an attacker would.
"""
import os
import shutil
import sys
import types
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from mmdwnet.utils import UnsafeCheckpointError, is_safe_loading, safe_loading

SCHEMES = sorted(CheckpointLoader._schemes)


class _Evil:
    """Unpickling this runs ``open(marker, 'w')``: the marker proves code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture
def poisoned(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine_home'))
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={'backbone.patch_embed.projection.weight': _Evil(str(marker))}),
               path)
    return path, marker


def _in_hub_cache(path, url):
    cache = Path(os.environ['TORCH_HOME']) / 'hub' / 'checkpoints'
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, cache / os.path.basename(urlparse(url).path))


def _first_http(table):
    return next(name for name, url in sorted(table.items())
                if isinstance(url, str) and url.startswith('http'))


def _local(path, monkeypatch):
    return str(path)


def _http(scheme):
    def recipe(path, monkeypatch):
        url = f'{scheme}download.openmmlab.com/poisoned/evil-model.pth'
        _in_hub_cache(path, url)
        return url
    return recipe


def _torchvision(prefix):
    def recipe(path, monkeypatch):
        name = 'resnet18'
        _in_hub_cache(path, mmengine_checkpoint.get_torchvision_models()[name])
        return prefix + name
    return recipe


def _openmmlab(prefix):
    def recipe(path, monkeypatch):
        table = mmengine_checkpoint.get_external_models()
        name = _first_http(table)
        _in_hub_cache(path, table[name])
        return prefix + name
    return recipe


def _mmcls(path, monkeypatch):
    table = mmengine_checkpoint.get_mmcls_models()
    name = _first_http(table)
    _in_hub_cache(path, table[name])
    return 'mmcls://' + name


def _pavi(path, monkeypatch):
    class Model:
        name = 'evil.pth'

        def download(self, dst):
            shutil.copy(path, dst)

    pavi = types.ModuleType('pavi')
    pavi.modelcloud = types.SimpleNamespace(get=lambda model_path: Model())
    monkeypatch.setitem(sys.modules, 'pavi', pavi)
    return 'pavi://models/evil.pth'


def _object_store(scheme):
    def recipe(path, monkeypatch):
        backend = types.SimpleNamespace(get=lambda uri: Path(path).read_bytes())
        monkeypatch.setattr(mmengine_checkpoint, 'get_file_backend',
                            lambda uri, backend_args=None: backend)
        return f'{scheme}bucket/evil.pth'
    return recipe


RECIPES = {
    '': _local,
    'http://': _http('http://'),
    'https://': _http('https://'),
    'torchvision://': _torchvision('torchvision://'),
    'modelzoo://': _torchvision('modelzoo://'),
    'open-mmlab://': _openmmlab('open-mmlab://'),
    'openmmlab://': _openmmlab('openmmlab://'),
    'mmcls://': _mmcls,
    'pavi://': _pavi,
    r'(\S+\:)?s3://': _object_store('s3://'),
    r'(\S+\:)?petrel://': _object_store('petrel://'),
}


@pytest.mark.parametrize('prefix', SCHEMES)
def test_every_scheme_is_read_weights_only(prefix, poisoned, monkeypatch):
    assert prefix in RECIPES, (
        f'mmengine knows a checkpoint scheme {prefix!r} that this test has no recipe for: add '
        'one to RECIPES (a URI of that scheme that reaches a poisoned file)')
    path, marker = poisoned
    uri = RECIPES[prefix](path, monkeypatch)
    loader = CheckpointLoader._schemes[prefix]
    assert CheckpointLoader._get_checkpoint_loader(uri) is loader, 'the recipe misses its scheme'
    real_load = torch.load
    with safe_loading():
        with pytest.raises(UnsafeCheckpointError, match='Weights only load failed') as info:
            CheckpointLoader.load_checkpoint(uri, map_location='cpu')
    assert not marker.exists(), f'{prefix!r}: the payload ran under the gate'
    # the refusal names the file (object stores hand torch.load bytes, not a file)
    message = str(info.value)
    assert message.split(':')[0].endswith('.pth') or 'read into memory' in message, message
    assert torch.load is real_load and not is_safe_loading()

    try:  # control: the same URI without the gate runs the payload
        CheckpointLoader.load_checkpoint(uri, map_location='cpu')
    except Exception:  # noqa: BLE001 - what happens after the payload ran does not matter
        pass
    assert marker.exists(), f'{prefix!r}: the recipe never reached torch.load'


def test_pretrained_init_cfg_and_init_model_refuse_a_poisoned_hub_cache(poisoned, repo_root):
    """``init_cfg=dict(type='Pretrained', checkpoint='torchvision://...')`` of a backbone and
    ``init_model(cfg, 'torchvision://...')``: refused without any context set up by the caller."""
    from mmdwnet.apis import init_model
    from reference_models import build, narrow_config
    path, marker = poisoned
    uri = _torchvision('torchvision://')(path, None)
    cfg = narrow_config(repo_root, 'cls_dwnet_narrow')
    pretrained = cfg.copy()
    pretrained.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=uri)
    with pytest.raises(UnsafeCheckpointError):
        build(pretrained).init_weights()
    with pytest.raises(UnsafeCheckpointError):
        init_model(cfg, uri)
    assert not marker.exists()


def test_safe_loading_hook_gates_the_runner_loads_and_leaves_nothing_behind(poisoned):
    """SafeLoadingHook (for runs started by the toolboxes' tools or mim) gates the runner's
    ``load_checkpoint``/``resume`` and the model's ``init_weights`` of this run only."""
    from mmdwnet.engine import SafeLoadingHook
    path, marker = poisoned

    class Model(torch.nn.Module):
        def init_weights(self):
            return CheckpointLoader.load_checkpoint('torchvision://resnet18')

    class Runner:
        model = Model()

        def load_checkpoint(self, filename, **kwargs):
            return CheckpointLoader.load_checkpoint(filename)

        def resume(self, filename, **kwargs):
            return CheckpointLoader.load_checkpoint(filename)

    _torchvision('torchvision://')(path, None)
    runner, real_load = Runner(), torch.load
    SafeLoadingHook().before_run(runner)
    for call in (lambda: runner.load_checkpoint(str(path)), lambda: runner.resume(str(path)),
                 runner.model.init_weights):
        with pytest.raises(UnsafeCheckpointError):
            call()
        assert torch.load is real_load  # restored even though the load raised
    assert not marker.exists()
    assert 'SafeLoadingHook' in _classification_runtime_hooks()


def _classification_runtime_hooks():
    from mmengine.config import Config
    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(root / 'configs/classification/_base_/default_runtime.py'))
    return [h['type'] for h in cfg.custom_hooks]


def test_gate_is_reentrant_and_restores_torch_load(tmp_path):
    real_load = torch.load
    torch.save({'w': torch.ones(2)}, tmp_path / 'ok.pth')
    with safe_loading():
        with safe_loading():
            assert is_safe_loading()
            assert torch.equal(torch.load(tmp_path / 'ok.pth', weights_only=False)['w'],
                               torch.ones(2))
        assert is_safe_loading()
    assert torch.load is real_load and not is_safe_loading()


def test_runner_checkpoints_load_under_the_gate(tmp_path):
    """The allow-list reads what mmengine's runner saves (HistoryBuffer, numpy in meta)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.5)
    torch.save(dict(meta=dict(epoch=np.int64(3), seed=np.array([1, 2])),
                    message_hub=dict(log_scalars={'loss': buffer}),
                    state_dict={'w': torch.ones(1)}), tmp_path / 'runner.pth')
    with safe_loading():
        ckpt = CheckpointLoader.load_checkpoint(str(tmp_path / 'runner.pth'))
    assert ckpt['message_hub']['log_scalars']['loss'].mean() == 1.5
    assert int(ckpt['meta']['epoch']) == 3
