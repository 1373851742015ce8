"""mmdwnet's classification metafile in mmpretrain's model hub (get_model / list_models)."""
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from mmengine.config import Config

import mmdwnet  # noqa: F401  (registers the models)
from mmdwnet import hub

ROOT = Path(__file__).resolve().parents[2]
METAFILE = ROOT / 'configs' / 'classification' / 'metafile.yml'


def metafile_models():
    return {m['Name']: m for m in yaml.safe_load(METAFILE.read_text())['Models']}


def test_list_models_finds_every_dwnet_model_of_the_metafile():
    from mmpretrain import list_models
    expected = sorted(name for name in metafile_models() if 'dwnet' in name)
    assert len(expected) >= 6
    assert sorted(list_models('*dwnet*')) == expected
    assert 'swin-tiny_8xb128_in1k' in list_models('swin-tiny_8xb128*')  # ours, by config name


def test_get_model_by_name_builds_what_the_config_builds():
    from mmpretrain import get_model
    from mmpretrain.apis import ModelHub

    from mmdwnet.apis import init_model
    name = 'dwnet-tiny_8xb128_in1k'
    info = ModelHub.get(name)
    assert Path(info.config.filename).resolve() == \
        (ROOT / metafile_models()[name]['Config']).resolve()
    model = get_model(name)
    assert type(model.backbone).__name__ == 'DWNet'
    cfg = Config.fromfile(str(ROOT / metafile_models()[name]['Config']))
    torch.testing.assert_close(model.data_preprocessor.mean.flatten(),
                               torch.tensor(cfg.data_preprocessor.mean))
    reference = init_model(cfg)
    assert model.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert model.state_dict()[key].shape == value.shape, key


def test_registration_is_idempotent():
    from mmpretrain.apis import ModelHub
    before = dict(ModelHub._models_dict)
    assert hub.register_models() is True
    assert hub.register_models() is True
    assert ModelHub._models_dict.keys() == before.keys()


def test_model_index_is_found_in_the_installed_mim_folder_then_the_checkout(tmp_path,
                                                                            monkeypatch):
    package = tmp_path / 'site-packages' / 'mmdwnet'
    mim = package / '.mim'
    (mim / 'configs' / 'classification').mkdir(parents=True)
    (mim / 'model-index.yml').write_text('Import:\n  - configs/classification/metafile.yml\n')
    (mim / hub.CLASSIFICATION_METAFILE).write_text(METAFILE.read_text())
    monkeypatch.setattr(hub, 'PACKAGE_DIR', package)
    assert hub.model_index_root() == mim  # a pip / mim install: mmdwnet/.mim
    checkout = tmp_path / 'checkout'
    (checkout / 'configs' / 'classification').mkdir(parents=True)
    (checkout / 'model-index.yml').write_text('Import: []\n')
    (checkout / hub.CLASSIFICATION_METAFILE).write_text('Models: []\n')
    monkeypatch.setattr(hub, 'PACKAGE_DIR', checkout / 'mmdwnet')
    assert hub.model_index_root() == checkout  # a source tree without .mim
    monkeypatch.setattr(hub, 'PACKAGE_DIR', tmp_path / 'nowhere' / 'mmdwnet')
    assert hub.model_index_root() is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert hub.register_models() is False
    assert any('pip install -e .' in str(w.message) for w in caught)


@pytest.mark.parametrize('name', ['cascade-mask-rcnn_dwnet-tiny_fpn_giou-4conv1f_ms-3x_coco',
                                  'upernet_dwnet-tiny_8xb2-160k_ade20k-512x512'])
def test_detection_and_segmentation_are_not_in_the_classification_hub(name):
    """mmpretrain builds every hub model under its own scope; downstream models stay out."""
    from mmpretrain.apis import ModelHub
    assert not ModelHub.has(name)


def test_every_preset_of_the_table_is_in_the_hub_with_its_own_backbone():
    """The presets table names configs that exist, are in the metafile and build the preset."""
    from mmdwnet.models.backbones.presets import PRESETS
    names = hub.preset_model_names()
    assert len(names) >= len(PRESETS)
    models = metafile_models()
    for row in PRESETS.values():
        for arch in row.archs:
            name = row.config_name(arch)
            assert name in names and name in models, name
            cfg = Config.fromfile(str(ROOT / models[name]['Config']))
            assert cfg.model.backbone.type == row.name, name
