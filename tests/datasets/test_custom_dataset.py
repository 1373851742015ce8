"""docs/custom_dataset.md: configs that inherit a preset and change arch, data and schedule, trained
on scikit-learn's digits through tools/train.py; `_delete_`; checkpoints and torch.load; --amp."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from digits_run import ROOT, TOP1_THRESHOLD, run

DIGITS = ROOT / 'configs' / 'classification' / 'digits'
DWNET = DIGITS / 'dwnet-nano_1xb64-10e_digits-32px.py'
IDDW = DIGITS / 'i-dynamic-dwnet-nano_1xb64-10e_digits-32px.py'


@pytest.fixture(scope='module')
def trained(digits_demo):
    return digits_demo


def test_configs_inherit_the_imagenet_presets_and_change_arch_data_schedule():
    text = DWNET.read_text()
    assert "_base_ = ['../dwnet-tiny_8xb128_in1k.py']" in text
    assert "_base_ = ['./dwnet-nano_1xb64-10e_digits-32px.py']" in IDDW.read_text()
    imagenet = Config.fromfile(str(ROOT / 'configs/classification/dwnet-tiny_8xb128_in1k.py'))
    for path, backbone in ((DWNET, 'DWNet'), (IDDW, 'IDynamicDWNet')):
        cfg = Config.fromfile(str(path))
        assert cfg.model.backbone.type == backbone and cfg.model.backbone.img_size == 32
        assert cfg.model.backbone.arch == dict(embed_dims=32, depths=[1, 1, 2, 1],
                                               num_heads=[1, 2, 4, 8])
        assert cfg.model.head.num_classes == cfg.data_preprocessor.num_classes == 10
        assert cfg.train_dataloader.dataset == dict(
            type='CustomDataset', data_root='data/digits', data_prefix='train',
            pipeline=cfg.train_pipeline)  # no ImageNetFolder key survives
        assert cfg.train_cfg.max_epochs == 10
        # inherited unchanged: optimizer type, no-decay rules, runtime, preprocessing
        assert cfg.optim_wrapper.paramwise_cfg == imagenet.optim_wrapper.paramwise_cfg
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'
        assert cfg.data_preprocessor.mean == imagenet.data_preprocessor.mean
        assert cfg.custom_imports == imagenet.custom_imports


def test_without_delete_the_merge_fails_as_the_doc_says(tmp_path):
    bad_arch = tmp_path / 'bad_arch.py'
    imagenet = ROOT / 'configs/classification/dwnet-tiny_8xb128_in1k.py'
    bad_arch.write_text(f'_base_ = [{str(imagenet)!r}]\n'
                        'model = dict(backbone=dict(arch=dict(embed_dims=32, depths=[1, 1, 2, 1], '
                        'num_heads=[1, 2, 4, 8])))\n')
    with pytest.raises(TypeError, match='_delete_'):
        Config.fromfile(str(bad_arch))
    # the base dataset's keys merged into CustomDataset (what happens without _delete_)
    base = Config.fromfile(str(imagenet))
    merged = dict(base.train_dataloader.dataset, type='CustomDataset', data_prefix='train')
    from mmpretrain.registry import DATASETS
    with pytest.raises(TypeError, match="'split'"):  # ImageNetFolder's key, unknown here
        DATASETS.build(merged)


@pytest.mark.slow
def test_both_models_train_far_above_chance(trained):
    _, results, out = trained
    for name in ('DWNet', 'I-D-DWNet'):
        assert results['models'][name]['top1'] >= TOP1_THRESHOLD, (name, results['models'][name])
    assert 'tools/train.py' in out and 'Epoch(train)' in out


@pytest.mark.slow
def test_runner_checkpoint_needs_the_loading_gate_for_plain_torch_load(trained):
    _, results, _ = trained
    ckpt = results['models']['DWNet']['checkpoint']
    plain = run([sys.executable, '-c', f'import torch; torch.load({ckpt!r})'], timeout=300)
    assert plain.returncode != 0 and 'UnpicklingError' in plain.stderr, plain.stderr[-2000:]
    ok = run([sys.executable, '-c', 'import torch\nfrom mmdwnet.utils import safe_loading\n'
              f'with safe_loading():\n    c = torch.load({ckpt!r})\n'
              "print(sorted(c['meta']['dataset_meta']['classes']))"], timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.strip() == str([str(d) for d in range(10)])  # the class folders


@pytest.mark.skipif(torch.cuda.is_available(), reason='tests the CPU-only message')
def test_amp_without_gpu_stops_with_a_message_before_the_runner(tmp_path):
    proc = subprocess.run([sys.executable, 'tools/train.py', str(DWNET), '--amp', '--work-dir',
                           str(tmp_path / 'amp')], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    assert proc.returncode == 1
    assert 'error: --amp' in proc.stderr and 'needs a CUDA GPU' in proc.stderr
    assert 'Train without --amp' in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'amp').exists()  # the runner never started
