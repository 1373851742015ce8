"""Issue 31 item 4: a partly random or damaged model never runs as if it had loaded.

Strict loading (``init_model``, ``tools/test.py``) takes only a checkpoint whose every value is a
tensor of the model's shape and kind of dtype; a zip checkpoint whose CRC does not match, or an
empty file, is an error naming the file; a model with NaN/inf weights is not evaluated.
"""
import zipfile

import pytest
import torch

from mmdwnet.apis import init_model
from mmdwnet.converters.loading import CheckpointMismatch, NonFiniteWeights
from mmdwnet.utils import CheckpointReadError, safe_loading, safe_torch_load
from reference_models import narrow_config, with_image_folder_test_set

KEY = 'backbone.stages.0.blocks.0.mixer.proj_in.weight'


@pytest.fixture(scope='module')
def ours(reference_dir, repo_root, tmp_path_factory):
    """(config, mmdwnet-format state dict) of the narrow DWNet classifier."""
    cfg = narrow_config(repo_root, 'cls_dwnet_narrow')
    state = init_model(cfg, str(reference_dir / 'cls_dwnet_narrow.pth')).state_dict()
    return cfg, state


def _save(tmp_path, state, name='ckpt.pth'):
    path = tmp_path / name
    torch.save(dict(state_dict=state), path)
    return str(path)


def test_the_good_checkpoint_loads(ours, tmp_path):
    cfg, state = ours
    model = init_model(cfg, _save(tmp_path, state))
    assert torch.equal(model.state_dict()[KEY], state[KEY])


@pytest.mark.parametrize('key', [KEY, 'head.fc.weight'])
def test_a_value_that_is_not_a_tensor_is_refused(ours, tmp_path, key):
    cfg, state = ours
    damaged = dict(state, **{key: [1.0, 2.0]})
    name = key.replace('backbone.', '', 1)  # the backbone reports keys under its prefix
    with pytest.raises(CheckpointMismatch, match=rf'values that are not tensors: {name} \(list\)'):
        init_model(cfg, _save(tmp_path, damaged))


def test_a_tensor_of_another_kind_of_dtype_is_refused(ours, tmp_path):
    cfg, state = ours
    damaged = dict(state, **{KEY: state[KEY].to(torch.int64)})
    with pytest.raises(CheckpointMismatch, match=r'dtype mismatches: stages.0.blocks.0.mixer.'
                       r'proj_in.weight: checkpoint '
                       r'torch.int64 vs model torch.float32'):
        init_model(cfg, _save(tmp_path, damaged))
    half = dict(state, **{KEY: state[KEY].half()})  # fp16 weights into fp32: a dtype, not damage
    assert init_model(cfg, _save(tmp_path, half, 'half.pth')).state_dict()[KEY].dtype == \
        torch.float32


def _flip_a_byte_of_tensor_data(path):
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if '/data/' in i.filename),
                   key=lambda i: i.file_size)
    with open(path, 'r+b') as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), 'little') for _ in range(2))
        start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(start)
        byte = f.read(1)[0]
        f.seek(start)
        f.write(bytes([byte ^ 0x10]))
    return info.filename


def test_a_flipped_byte_in_tensor_data_is_refused_naming_the_file(ours, tmp_path):
    cfg, state = ours
    path = _save(tmp_path, state)
    record = _flip_a_byte_of_tensor_data(path)
    torch.load(path, weights_only=True)  # control: torch itself loads it silently
    for load in (lambda: init_model(cfg, path), lambda: safe_torch_load(path)):
        with pytest.raises(CheckpointReadError, match='CRC32') as info:
            load()
        assert path in str(info.value) and record in str(info.value)


def test_an_empty_file_is_an_error_naming_it(ours, tmp_path):
    cfg, _ = ours
    path = tmp_path / 'empty.pth'
    path.write_bytes(b'')
    from mmengine.runner import load_checkpoint
    for load in (lambda: init_model(cfg, str(path)), lambda: safe_torch_load(path)):
        with pytest.raises(CheckpointReadError, match=r'empty \(0 bytes\)') as info:
            load()
        assert str(path) in str(info.value)
    with safe_loading(), pytest.raises(CheckpointReadError, match=str(path)):
        load_checkpoint(torch.nn.Linear(1, 1), str(path))


def test_a_truncated_file_is_an_error_naming_it(ours, tmp_path):
    cfg, state = ours
    path = _save(tmp_path, state)
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])
    with pytest.raises(CheckpointReadError, match='damaged|truncated') as info:
        init_model(cfg, path)
    assert path in str(info.value)


def _nan_state(state):
    bad = state[KEY].clone()
    bad.view(-1)[3] = float('nan')
    return dict(state, **{KEY: bad})


def test_init_model_refuses_non_finite_weights(ours, tmp_path):
    cfg, state = ours
    with pytest.raises(NonFiniteWeights, match=rf"parameter '{KEY}' holds 1 NaN/inf"):
        init_model(cfg, _save(tmp_path, _nan_state(state)))


def test_tools_test_refuses_non_finite_weights_before_scoring(ours, repo_root, tmp_path):
    cfg, state = ours
    from mmdwnet.apis import test as tool  # tools/test.py's main
    test_cfg = with_image_folder_test_set(cfg.copy(), tmp_path / 'images')
    test_cfg.dump(str(tmp_path / 'cfg.py'))
    nan = {k: (torch.full_like(v, float('nan')) if v.is_floating_point() else v)
           for k, v in state.items()}
    with pytest.raises(NonFiniteWeights, match="parameter 'backbone.patch_embed"):
        tool.main([str(tmp_path / 'cfg.py'), _save(tmp_path, nan), '--work-dir',
                   str(tmp_path / 'work')])
    metrics = tool.main([str(tmp_path / 'cfg.py'), _save(tmp_path, state, 'good.pth'),
                         '--work-dir', str(tmp_path / 'work')])
    assert 'accuracy/top1' in metrics  # control: the same run with finite weights scores


def test_non_finite_outputs_are_not_scored(repo_root):
    from mmdwnet.apis import test as tool  # tools/test.py's main
    model = torch.nn.Sequential()
    model.add_module('backbone', torch.nn.Linear(2, 2))
    tool.refuse_non_finite_outputs(model)
    model(torch.ones(1, 2))  # finite: fine
    with pytest.raises(NonFiniteWeights, match='backbone of the model produced NaN/inf'):
        model(torch.tensor([[float('inf'), 1.0]]))


# ------------------------------------------------------------- state-dict versions (issue 29.4)
def _tiny():
    from mmdwnet.registry import MODELS
    return MODELS.build(dict(type='DWNet', arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                                                     num_heads=1)))


def test_backbone_state_records_its_version_and_older_keys_are_migrated(monkeypatch):
    from mmdwnet.converters import loading
    from mmdwnet.models import LocalMixerNet
    source, target = _tiny(), _tiny()
    state = source.state_dict()
    assert state._metadata[''] == {'version': LocalMixerNet._version}
    old = {('patch_embed.ln.' + k[len('patch_embed.norm.'):] if k.startswith('patch_embed.norm.')
            else k): v for k, v in state.items()}  # a made-up version-1 key name
    old = type(state)(old)
    old._metadata = state._metadata

    def rename(st, prefix):
        for key in [k for k in st if k.startswith(prefix + 'patch_embed.ln.')]:
            st[key.replace('patch_embed.ln.', 'patch_embed.norm.', 1)] = st.pop(key)

    with pytest.raises(CheckpointMismatch, match='patch_embed.ln'):  # no migration: refused
        target.load_state_dict(old)
    monkeypatch.setattr(LocalMixerNet, '_version', LocalMixerNet._version + 1)
    monkeypatch.setitem(loading.MIGRATIONS, LocalMixerNet._version - 1, rename)
    target.load_state_dict(old)
    assert torch.equal(target.patch_embed.norm.weight, source.patch_embed.norm.weight)
    newer = type(state)(state)
    newer._metadata = {'': {'version': LocalMixerNet._version + 1}}
    with pytest.raises(CheckpointMismatch, match='newer mmdwnet'):
        target.load_state_dict(newer)
