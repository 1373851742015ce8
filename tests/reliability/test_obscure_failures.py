"""Issue #31.6: failures that used to be obscure either work or say what is wrong and what to do.
"""
import glob
import warnings
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmdwnet.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(embed_dims=8, depths=[1, 1, 1, 1], num_heads=1)


def test_unknown_norm_type_names_itself_and_the_known_ones():
    with pytest.raises(KeyError) as err:
        MODELS.build(dict(type='DWNet', arch=TINY, norm2_cfg=dict(type='FooBN')))
    msg = str(err.value)
    assert "norm2_cfg: unknown norm layer type 'FooBN'" in msg and "did you mean 'BN'" in msg
    assert 'BN, ' in msg and 'CCBN' in msg and 'LN' in msg and 'Cannot find None' not in msg
    with pytest.raises(KeyError, match="unknown norm layer type 'Nope'"):  # mixer's generator
        MODELS.build(dict(type='DynamicDWNet', arch=TINY, mixer=dict(norm_cfg=dict(type='Nope'))))
    MODELS.build(dict(type='DWNet', arch=TINY, norm2_cfg=dict(type='CCBN')))  # known: builds


def test_dynamic_dw_batch_of_one_in_training_says_what_to_do():
    model = MODELS.build(dict(type='DynamicDWNet', arch=TINY))
    model.train()
    model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match='D-DW kernel generator.*batch of one image.*drop_last'):
        model(torch.randn(1, 3, 32, 32))
    model.eval()
    assert model(torch.randn(1, 3, 32, 32))[-1].shape[0] == 1


def _train_loaders():
    """(path, train_dataloader) of every config file that defines or changes one (leaves only
    inherit from these)."""
    for path in sorted(glob.glob(str(ROOT / 'configs' / '**' / '*.py'), recursive=True)):
        if 'train_dataloader' not in Path(path).read_text():
            continue
        cfg = Config.fromfile(path)
        if cfg.get('train_dataloader'):
            yield path, cfg.train_dataloader


def test_every_train_loader_drops_a_last_small_batch():
    """A last batch of one image breaks training BatchNorm: every epoch-based train loader
    drops the last incomplete batch (mmseg's InfiniteSampler never yields one)."""
    seen = 0
    for path, loader in _train_loaders():
        sampler = loader.get('sampler', {}).get('type')
        if sampler == 'InfiniteSampler':
            continue
        seen += 1
        batch_sampler = loader.get('batch_sampler') or {}
        assert loader.get('drop_last') or batch_sampler.get('drop_last'), path
    assert seen >= 4  # ImageNet-1k, -21k, COCO, digits


def _digits_cfg(max_epochs, warmup):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'classification' / 'digits'
                              / 'dwnet-nano_1xb64-10e_digits-32px.py'))
    cfg.train_cfg.max_epochs = max_epochs
    cfg.param_scheduler[0].end = warmup
    cfg.param_scheduler[1].begin = warmup
    return cfg


def test_warmup_longer_than_training_is_clipped_with_a_warning():
    from mmdwnet.engine.schedules import fit_schedulers_to_training
    cfg = _digits_cfg(2, 5)
    with pytest.warns(UserWarning) as record:
        fit_schedulers_to_training(cfg)
    messages = ' '.join(str(w.message) for w in record)
    assert 'LinearLR ends at epoch 5, after the 2-epoch training: clipped' in messages
    assert 'CosineAnnealingLR begins at epoch 5' in messages and 'removed' in messages
    assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR']
    assert cfg.param_scheduler[0]['end'] == 2
    cfg = _digits_cfg(10, 1)  # fits: unchanged, no warning
    before = [dict(s) for s in cfg.param_scheduler]
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        fit_schedulers_to_training(cfg)
    assert [dict(s) for s in cfg.param_scheduler] == before


def test_warmup_longer_than_training_builds_its_schedulers(tmp_path):
    """Without the fitting mmengine fails inside the scheduler; with it the run's schedulers
    build (what tools/train.py does through mmdwnet.utils.cli.build_runner)."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS
    from mmdwnet.engine.schedules import fit_schedulers_to_training
    model = torch.nn.Linear(2, 2)
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='AdamW', lr=1e-3)))

    def build(cfg):
        return [PARAM_SCHEDULERS.build(dict(s, optimizer=optim.optimizer, epoch_length=10,
                                            **({} if 'end' in s else dict(end=2))))
                if not s.get('convert_to_iter_based') else
                PARAM_SCHEDULERS.get(s['type']).build_iter_from_epoch(
                    optimizer=optim.optimizer, epoch_length=10,
                    **{k: v for k, v in s.items() if k not in ('type', 'convert_to_iter_based')})
                for s in cfg.param_scheduler]

    with pytest.raises(ValueError):
        build(_digits_cfg(2, 5))
    cfg = _digits_cfg(2, 5)
    with pytest.warns(UserWarning):
        fit_schedulers_to_training(cfg)
    (warmup, ) = build(cfg)
    assert warmup.end == 20  # 2 epochs of 10 iterations
