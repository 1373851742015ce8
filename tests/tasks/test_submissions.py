"""Leaderboard submissions on tiny synthetic data: COCO test-dev result files written by the
documented ``--cfg-options`` line (docs/detection.md), ADE20K test PNGs written by the
``*_test-submission.py`` configs (labels 1..150)."""
import argparse
import ast
import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config, DictAction
from PIL import Image

from mmdwnet.apis import test as test_tool
from test_detection_e2e import CLASSES, VAL_SIZES, e2e_cfg, make_coco
from test_segmentation_e2e import narrow_config

TEST_SIZES = [(131, 97), (75, 61)]  # (W, H) of the synthetic ADE20K test images


def documented_cfg_options(doc):
    """The ``--cfg-options`` of the shell block in ``doc`` that mentions the test-dev file."""
    block = next(b for b in re.findall(r'```shell\n(.*?)```', doc, re.S)
                 if 'image_info_test-dev2017.json' in b)
    tokens = shlex.split(block.replace('\\\n', ' ').splitlines()[0])
    assert tokens[:2] == ['python', 'tools/test.py']
    return tokens[tokens.index('--cfg-options') + 1:]


def save_checkpoint(cfg, path):
    """A randomly initialised model of ``cfg`` as a checkpoint file tools/test.py can load."""
    from mmdwnet.apis import init_model
    torch.manual_seed(0)
    torch.save({'state_dict': init_model(cfg).state_dict(), 'meta': {}}, path)
    return path


def run_test_tool(repo_root, argv):
    test_tool.main(argv)  # tools/test.py's main


@pytest.fixture(scope='module')
def options(repo_root):
    return documented_cfg_options((repo_root / 'docs' / 'detection.md').read_text())


def test_documented_line_turns_a_detection_config_into_a_test_dev_run(repo_root, options):
    """Every detection config inherits the same dataset base; Swin-B stands for the eight (the
    run below uses a DWNet-T one)."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)  # as tools/test.py
    cfg_options = parser.parse_args(['--cfg-options', *options]).cfg_options
    det = repo_root / 'configs' / 'detection'
    cfg = Config.fromfile(str(det / 'cascade-mask-rcnn_swin-base_fpn_giou-4conv1f_ms-3x_coco.py'))
    cfg.merge_from_dict(cfg_options)
    dataset, metric = cfg.test_dataloader.dataset, cfg.test_evaluator
    assert dataset.type == 'CocoDataset' and dataset.test_mode
    assert dataset.ann_file == 'annotations/image_info_test-dev2017.json'
    assert dataset.data_prefix.img == 'test2017/'
    assert metric.type == 'CocoMetric' and metric.format_only is True
    assert metric.ann_file == dataset.data_root + dataset.ann_file
    assert metric.outfile_prefix and sorted(metric.metric) == ['bbox', 'segm']


@pytest.mark.slow
def test_coco_test_dev_files_in_the_server_format(repo_root, options, tmp_path, monkeypatch):
    """The documented line, run as written (relative paths from the working directory) on a
    synthetic COCO with a test2017/ folder and an image list without annotations."""
    monkeypatch.chdir(tmp_path)
    root = make_coco(tmp_path / 'data' / 'coco')
    shutil.copytree(root / 'val2017', root / 'test2017')
    info = json.loads((root / 'annotations' / 'instances_val2017.json').read_text())
    info.pop('annotations')
    # COCO's category ids are not contiguous: make them so here too
    for cat in info['categories']:
        cat['id'] = {1: 1, 2: 3, 3: 90}[cat['id']]
    info['images'] = [dict(img, id=img['id'] * 1000 + 7) for img in info['images']]
    (root / 'annotations' / 'image_info_test-dev2017.json').write_text(json.dumps(info))

    cfg = e2e_cfg(repo_root / 'configs' / 'detection', Path('data/coco'))
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # an untrained model still writes detections
    cfg_path = tmp_path / 'cascade-mask-rcnn_tiny_coco.py'
    cfg.dump(str(cfg_path))
    ckpt = save_checkpoint(cfg, tmp_path / 'tiny.pth')
    run_test_tool(repo_root, [str(cfg_path), str(ckpt), '--work-dir', str(tmp_path / 'work'),
                              '--cfg-options', *options])

    prefix = dict(o.split('=', 1) for o in options)['test_evaluator.outfile_prefix']
    written = sorted(p.name for p in (tmp_path / prefix).parent.iterdir())
    name = (tmp_path / prefix).name
    assert written == [f'{name}.bbox.json', f'{name}.segm.json']  # no mAP, no gt file
    image_ids = {img['id'] for img in info['images']}
    cat_ids = {cat['id'] for cat in info['categories']}
    sizes = {img['id']: (img['height'], img['width']) for img in info['images']}
    for task in ('bbox', 'segm'):
        results = json.loads((tmp_path / f'{prefix}.{task}.json').read_text())
        assert results and isinstance(results, list)
        assert {r['image_id'] for r in results} == image_ids  # every test image, COCO ids
        assert {r['category_id'] for r in results} <= cat_ids
        assert len({r['category_id'] for r in results}) > 1
        for r in results:
            assert set(r) == ({'image_id', 'category_id', 'bbox', 'score'} |
                              ({'segmentation'} if task == 'segm' else set()))
            assert len(r['bbox']) == 4 and r['bbox'][2] >= 0 and r['bbox'][3] >= 0
            assert 0 <= r['score'] <= 1
            if task == 'segm':
                rle = r['segmentation']
                assert rle['size'] == list(sizes[r['image_id']]) and isinstance(
                    rle['counts'], str)
    assert len(info['images']) == len(VAL_SIZES) and len(info['categories']) == len(CLASSES)


def write_ade20k_test(root):
    """``root/testing/ADE_test_0000000N.jpg`` at odd sizes, no annotations."""
    rng = np.random.default_rng(1)
    (root / 'testing').mkdir(parents=True)
    for i, (w, h) in enumerate(TEST_SIZES, 1):
        Image.fromarray(rng.integers(0, 255, (h, w, 3)).astype(np.uint8)).save(
            root / 'testing' / f'ADE_test_{i:08d}.jpg', quality=95)
    return root


def test_every_segmentation_model_has_a_test_submission_config(repo_root):
    seg = repo_root / 'configs' / 'segmentation'
    models = sorted(p.name for p in seg.glob('upernet_*_8xb2-160k_ade20k-512x512.py'))
    assert len(models) >= 8  # Table 3 (and Table 11) models
    for name in models:
        tree = ast.parse((seg / name.replace('.py', '_test-submission.py')).read_text())
        bases = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                     and node.targets[0].id == '_base_')
        assert ast.literal_eval(bases) == [f'./{name}', './_base_/ade20k_test_submission.py']
    for name in ('upernet_swin-base_8xb2-160k_ade20k-512x512.py', models[0]):
        cfg = Config.fromfile(str(seg / name.replace('.py', '_test-submission.py')))
        assert cfg.model == Config.fromfile(str(seg / name)).model
        dataset = cfg.test_dataloader.dataset
        assert dataset.type == 'ADE20KDataset' and dataset.get('reduce_zero_label', True)
        assert dataset.data_prefix == dict(img_path='testing')
        assert [t['type'] for t in dataset.pipeline] == \
            ['LoadImageFromFile', 'Resize', 'PackSegInputs']  # no annotations to load
        assert cfg.test_evaluator == dict(type='IoUMetric', format_only=True,
                                          output_dir='work_dirs/ade20k_test_png')


@pytest.mark.slow
def test_ade20k_test_pngs_hold_labels_1_to_150(repo_root, tmp_path, monkeypatch):
    from mmseg.apis import inference_model

    from mmdwnet.apis import init_model
    monkeypatch.chdir(tmp_path)
    test_root = write_ade20k_test(tmp_path / 'data' / 'ade' / 'release_test')
    cfg = narrow_config(tmp_path / 'unused', tmp_path / 'work',
                        name='upernet_dwnet-tiny_8xb2-160k_ade20k-512x512_test-submission.py')
    cfg.test_dataloader.dataset.data_root = 'data/ade/release_test'
    cfg_path = tmp_path / 'upernet_narrow_test-submission.py'
    cfg.dump(str(cfg_path))
    ckpt = save_checkpoint(cfg, tmp_path / 'narrow.pth')
    run_test_tool(repo_root, [str(cfg_path), str(ckpt), '--work-dir', str(tmp_path / 'work')])

    out_dir = tmp_path / 'work_dirs' / 'ade20k_test_png'
    assert sorted(p.name for p in out_dir.iterdir()) == \
        [f'ADE_test_{i:08d}.png' for i in range(1, len(TEST_SIZES) + 1)]
    model = init_model(str(cfg_path), str(ckpt))
    labels = set()
    for i, (w, h) in enumerate(TEST_SIZES, 1):
        png = np.asarray(Image.open(out_dir / f'ADE_test_{i:08d}.png'))
        assert png.shape == (h, w) and png.dtype == np.uint8
        pred = inference_model(model, str(test_root / 'testing' / f'ADE_test_{i:08d}.jpg'))
        train_ids = pred.pred_sem_seg.data[0].numpy()
        assert train_ids.min() >= 0 and train_ids.max() <= 149
        np.testing.assert_array_equal(png, train_ids + 1)  # the server's 1..150
        labels |= set(np.unique(png).tolist())
    assert min(labels) >= 1 and max(labels) <= 150 and len(labels) > 1
