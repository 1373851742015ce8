"""Issue 14 item 4: checkpoints are always unpickled with weights_only=True.

``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` makes ``torch.load`` unpickle arbitrary objects wherever
``weights_only`` is not passed (torch reads the variable at every call).  A malicious checkpoint
(its pickle calls ``open(marker, 'w')``) goes through every load path of the package and tools
under that variable; the marker file must never appear.  A control load without
``weights_only`` shows that the variable does disarm torch's default, so the test can fail.
"""
import os
import pickle
import shutil

import pytest
import torch
from mmengine.runner import load_checkpoint

from mmdwnet.apis import init_model
from mmdwnet.apis import test as test_tool
from mmdwnet.converters import official2mmdwnet
from mmdwnet.utils import safe_loading
from reference_models import build, narrow_config, with_image_folder_test_set


class _Evil:
    """Unpickling this runs ``open(marker, 'w')``: the marker proves code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def _gated(fn, *args, **kwargs):
    with safe_loading():
        return fn(*args, **kwargs)


@pytest.fixture
def evil(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={'backbone.patch_embed.projection.weight': _Evil(str(marker))}),
               path)
    control_marker = tmp_path / 'control-pwned'
    torch.save({'x': _Evil(str(control_marker))}, tmp_path / 'control.pth')
    torch.load(tmp_path / 'control.pth')  # no weights_only: the variable turns the check off
    assert control_marker.exists(), 'the environment variable did not disarm torch.load'
    return str(path), marker


def test_malicious_checkpoint_runs_nothing_in_any_load_path(evil, repo_root, tmp_path, capsys):
    from mmpretrain import get_model
    path, marker = evil
    cfg = narrow_config(repo_root, 'cls_dwnet_narrow')
    pretrained = cfg.copy()
    pretrained.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=path,
                                              prefix='backbone.')
    test_cfg = with_image_folder_test_set(cfg.copy(), tmp_path / 'images')
    test_cfg.dump(str(tmp_path / 'cfg.py'))
    paths = {
        'init_model': lambda: init_model(cfg, path),
        # mmengine's and the toolboxes' own loaders, under the gate that tools/train.py,
        # tools/test.py and SafeLoadingHook apply (``import mmdwnet`` patches nothing)
        'load_checkpoint (load_from, --resume)': lambda: _gated(load_checkpoint, build(cfg), path),
        'init_cfg Pretrained': lambda: build(pretrained).init_weights(),  # gates itself
        'mmpretrain.get_model': lambda: _gated(get_model, cfg, pretrained=path),
        'tools/test.py': lambda: test_tool.main(
            [str(tmp_path / 'cfg.py'), path, '--work-dir', str(tmp_path / 'work')]),
    }
    for name, load in paths.items():
        with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
            load()
        assert not marker.exists(), name
    assert official2mmdwnet.main([path, str(tmp_path / 'out.pth')]) == 2
    assert 'could not be read with weights_only=True' in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


def test_urls_are_downloaded_and_read_with_weights_only(reference_dir, repo_root, monkeypatch,
                                                       tmp_path):
    """A metafile ``Weights`` URL goes through mmengine's http loader, which finds the file in
    the torch hub cache (placed there: no network); init_model's gate reads it with
    ``weights_only=True`` (torch.hub itself passes False), then convert-on-load."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    cache = tmp_path / 'torch' / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    shutil.copy(reference_dir / 'cls_dwnet_narrow.pth', cache / 'x.pth')
    calls, real_load = [], torch.load

    def recording_load(f, *args, **kwargs):
        calls.append((os.path.basename(str(f)), kwargs.get('weights_only')))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, 'load', recording_load)
    url = 'https://github.com/Atten4Vis/DemystifyLocalViT/releases/download/prerelease/x.pth'
    model = init_model(narrow_config(repo_root, 'cls_dwnet_narrow'), url)
    assert calls == [('x.pth', True)]
    assert torch.load is recording_load  # the gate restored what it found
    official = real_load(reference_dir / 'cls_dwnet_narrow.pth', weights_only=True)['model']
    assert torch.equal(model.head.fc.weight, official['head.weight'])
