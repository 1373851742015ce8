"""``--cfg-options data_root=DIR`` moves every dataset of a config that used its ``data_root``
(the digit-scenes configs' contract: another data set in the same layout by this one override)."""
import argparse
from pathlib import Path

import pytest

from mmdwnet.utils.cli import load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [
    'configs/detection/digits/cascade-mask-rcnn_dwnet-nano_fpn_1xb4-digit-scenes.py',
    'configs/detection/digits/cascade-mask-rcnn_i-dynamic-dwnet-nano_fpn_1xb4-digit-scenes.py',
    'configs/segmentation/digits/upernet_dwnet-nano_1xb8-digit-scenes.py',
    'configs/segmentation/digits/upernet_i-dynamic-dwnet-nano_1xb8-digit-scenes.py',
]
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _load(config, **options):
    return load_config(argparse.Namespace(config=str(config), launcher='none', work_dir=None,
                                          cfg_options=options or None))


@pytest.mark.parametrize('config', CONFIGS)
def test_data_root_alone_moves_every_loader(config, tmp_path):
    before = _load(ROOT / config)
    assert all(before[k].dataset.data_root != str(tmp_path) for k in LOADERS)
    cfg = _load(ROOT / config, data_root=str(tmp_path))
    assert [cfg[k].dataset.data_root for k in LOADERS] == [str(tmp_path)] * 3
    assert cfg.data_root == str(tmp_path)
    # everything else is untouched
    assert cfg.train_dataloader.dataset.get('ann_file') == before.train_dataloader.dataset.get('ann_file')
    assert cfg.model == before.model


def test_data_root_with_other_options_and_nested_datasets(tmp_path):
    cfg_file = tmp_path / 'wrapped.py'
    cfg_file.write_text(
        "data_root = 'a/'\n"
        "train_dataloader = dict(dataset=dict(type='RepeatDataset', times=2,\n"
        "    dataset=dict(type='X', data_root=data_root)))\n"
        "val_dataloader = dict(dataset=dict(type='X', data_root='elsewhere/'))\n"
        "train_cfg = dict(max_iters=10)\n")
    cfg = _load(cfg_file, data_root='b/', **{'train_cfg.max_iters': 3})
    assert cfg.train_dataloader.dataset.dataset.data_root == 'b/'
    assert cfg.val_dataloader.dataset.data_root == 'elsewhere/'  # was not the variable's value
    assert cfg.train_cfg.max_iters == 3


def test_data_root_refused_where_it_would_change_nothing(tmp_path):
    none = tmp_path / 'no_root.py'
    none.write_text("train_dataloader = dict(dataset=dict(data_root='x/'))\n")
    with pytest.raises(ValueError, match='no top-level data_root'):
        _load(none, data_root='y/')
    unused = tmp_path / 'unused.py'
    unused.write_text("data_root = 'a/'\ntrain_dataloader = dict(dataset=dict(data_root='x/'))\n")
    with pytest.raises(ValueError, match='no dataset of .* uses its data_root'):
        _load(unused, data_root='y/')
