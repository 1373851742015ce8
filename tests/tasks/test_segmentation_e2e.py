"""End to end on a synthetic ADE20K-format dataset: train, test (mIoU table), TTA, demo.

The dataset is written in the real on-disk layout (``images/{training,validation}/*.jpg``,
``annotations/{training,validation}/*.png`` with 0 = "other", ignored via
``reduce_zero_label=True``), with odd image sizes; the model is the real UPerNet config with a
narrow backbone and small odd crops.
"""
import copy
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmdwnet.apis import test as test_tool
from mmdwnet.apis import train as train_tool

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs' / 'segmentation'
NARROW = dict(_delete_=True, embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
SIZES = [(131, 97), (97, 131), (75, 61)]  # (W, H): multiples of neither 4, 7 nor 32
NUM_LABELS = 5  # labels 1..5 = ADE20K classes 0..4 (wall, building, sky, floor, tree)
CROP = (61, 75)  # (H, W) train crop, odd on purpose
TEST_SCALE = (262, 97)  # keep_ratio resize that leaves 131x97 images at their size


def _draw_sample(rng, w, h):
    """An image and its label map: background label 0 (ignored) plus random class regions."""
    label = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for cls in range(1, NUM_LABELS + 1):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(h // 6, h // 2), rng.integers(w // 6, w // 2)
        if cls % 2:
            label[(np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)] = cls
        else:
            label[((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 < 1] = cls
    colours = rng.integers(0, 256, (NUM_LABELS + 1, 3))
    image = colours[label] + rng.normal(0, 12, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_ade20k(root, num_train=4, num_val=3, seed=0):
    """Write a tiny dataset in the ADEChallengeData2016 layout under ``root``."""
    rng = np.random.default_rng(seed)
    for split, n in (('training', num_train), ('validation', num_val)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for i in range(n):
            w, h = SIZES[i % len(SIZES)]
            image, label = _draw_sample(rng, w, h)
            name = f'ADE_{split[:5]}_{i:08d}'
            Image.fromarray(image).save(root / 'images' / split / f'{name}.jpg', quality=95)
            Image.fromarray(label, mode='L').save(root / 'annotations' / split / f'{name}.png')
    return root


def _resize_scales(pipeline, scale):
    for t in pipeline:
        if t['type'] in ('RandomResize', 'Resize') and 'scale' in t:
            t['scale'] = scale
        if t['type'] == 'RandomCrop':
            t['crop_size'] = CROP


def narrow_config(data_root, work_dir, name='upernet_dwnet-tiny_8xb2-160k_ade20k-512x512.py',
                  max_iters=3):
    """The real config with a narrow backbone, small odd crops, a few iterations, no workers."""
    cfg = Config.fromfile(str(CONFIGS / name))
    cfg.merge_from_dict(dict(model=dict(
        data_preprocessor=dict(size=CROP),
        backbone=dict(arch=copy.deepcopy(NARROW), init_cfg=None, drop_path_rate=0.1),
        decode_head=dict(in_channels=[16, 32, 64, 128], channels=16),
        auxiliary_head=dict(in_channels=64, channels=8))))
    cfg.train_pipeline = cfg.train_dataloader.dataset.pipeline
    _resize_scales(cfg.train_dataloader.dataset.pipeline, (160, 64))
    _resize_scales(cfg.test_dataloader.dataset.pipeline, TEST_SCALE)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
        cfg[loader].dataset.data_root = str(data_root)
    cfg.test_pipeline = cfg.test_dataloader.dataset.pipeline
    cfg.val_dataloader = cfg.test_dataloader
    cfg.tta_pipeline[1]['transforms'][0] = [
        dict(type='Resize', scale=(int(262 * r), int(97 * r)), keep_ratio=True) for r in (.75, 1.)]
    cfg.train_cfg.update(max_iters=max_iters, val_interval=10**6)
    cfg.default_hooks.logger.interval = 1
    cfg.param_scheduler = [dict(type='PolyLR', power=1.0, begin=0, end=max_iters, by_epoch=False)]
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.env_cfg.cudnn_benchmark = False
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=0)
    return cfg


@pytest.fixture(scope='module')
def ade20k(tmp_path_factory):
    return write_ade20k(tmp_path_factory.mktemp('ADEChallengeData2016'))


@pytest.fixture(scope='module')
def trained(ade20k, tmp_path_factory):
    """Train the narrow model with tools/train.py; returns (config path, checkpoint)."""
    tmp = tmp_path_factory.mktemp('seg_train')
    cfg_path = tmp / 'upernet_narrow_ade20k.py'
    narrow_config(ade20k, tmp / 'work').dump(str(cfg_path))
    train_tool.main([str(cfg_path), '--work-dir', str(tmp / 'work')])
    ckpt = tmp / 'work' / 'iter_3.pth'
    assert ckpt.is_file(), sorted(p.name for p in (tmp / 'work').iterdir())
    return cfg_path, ckpt


@pytest.mark.slow
def test_train_few_iterations_odd_sizes(trained):
    cfg_path, ckpt = trained
    from mmdwnet.utils import safe_torch_load  # runner checkpoint: mmengine's log types
    state = safe_torch_load(ckpt, map_location='cpu')
    assert state['meta']['iter'] == 3
    assert state['meta']['dataset_meta']['classes'][0] == 'wall'
    logs = '\n'.join(p.read_text() for p in ckpt.parent.glob('*/*.log'))
    losses = [float(v) for v in re.findall(r'decode\.loss_ce: ([0-9.]+)', logs)]
    aux = [float(v) for v in re.findall(r'aux\.loss_ce: ([0-9.]+)', logs)]
    assert len(losses) == 3 and len(aux) == 3, logs[-2000:]
    assert all(np.isfinite(losses)) and all(v > 0 for v in losses)


@pytest.mark.slow
def test_test_tool_prints_miou_table(trained, tmp_path, capfd):
    cfg_path, ckpt = trained
    metrics = test_tool.main([str(cfg_path), str(ckpt), '--work-dir', str(tmp_path)])
    out = ''.join(capfd.readouterr())
    assert 'do not match exactly' not in out
    assert 'per class results' in out
    assert re.search(r'\|\s+Class\s+\|\s+IoU\s+\|\s+Acc\s+\|', out), out[-3000:]
    assert re.search(r'\|\s+wall\s+\|\s+[0-9.]+\s+\|\s+[0-9.]+\s+\|', out), out[-3000:]
    m = re.search(r'mIoU: ([0-9.]+)\s+mAcc: ([0-9.]+)', out)
    assert m and float(m.group(1)) == pytest.approx(metrics['mIoU'], abs=0.01), out[-2000:]
    assert 0 <= metrics['mIoU'] <= 100


@pytest.mark.slow
def test_ms_flip_tta_config(trained, tmp_path, capfd):
    """The *_ms-flip-tta.py pattern: SegTTAModel around the model, the TTA pipeline as test set."""
    tta_path = CONFIGS / 'upernet_dwnet-tiny_8xb2-160k_ade20k-512x512_ms-flip-tta.py'
    real = Config.fromfile(str(tta_path))
    assert real.model.type == 'SegTTAModel' and real.model.module.backbone.type == 'DWNet'
    tta = real.test_dataloader.dataset.pipeline[1]
    assert tta['type'] == 'TestTimeAug' and len(tta['transforms'][0]) == 6
    assert [t['prob'] for t in tta['transforms'][1]] == [0., 1.]

    cfg_path, ckpt = trained
    text = tta_path.read_text()
    tta_cfg = tmp_path / 'narrow_tta.py'
    tta_cfg.write_text(text.replace("'./upernet_dwnet-tiny_8xb2-160k_ade20k-512x512.py'",
                                    repr(str(cfg_path))))
    metrics = test_tool.main([str(tta_cfg), str(ckpt), '--work-dir', str(tmp_path)])
    assert 0 <= metrics['mIoU'] <= 100 and 'mAcc' in metrics
    out = ''.join(capfd.readouterr())
    assert 'Load checkpoint from' in out
    assert 'do not match exactly' not in out  # the wrapped model took every weight


@pytest.mark.slow
def test_demo_overlay_on_astronaut(trained, tmp_path):
    from skimage import data
    cfg_path, ckpt = trained
    photo = data.astronaut()
    img = tmp_path / 'astronaut.jpg'
    Image.fromarray(photo).save(img)
    out = tmp_path / 'vis' / 'astronaut_seg.png'
    demo = runpy.run_path(str(ROOT / 'demo' / 'seg_demo.py'))
    assert demo['main']([str(img), str(cfg_path), str(ckpt), '--out-file', str(out)]) == 0
    overlay = np.asarray(Image.open(out).convert('RGB'))
    assert overlay.shape == photo.shape
    original = np.asarray(Image.open(img).convert('RGB')).astype(int)
    assert np.abs(overlay.astype(int) - original).mean() > 5  # class colours were painted
    # the array path of the same function
    vis, labels = demo['segment_image'](photo, cfg_path, ckpt, tmp_path / 'arr.png')
    assert vis.shape == photo.shape and labels.shape == photo.shape[:2]
    assert labels.max() < 150


def test_demo_bad_input(tmp_path, capsys):
    demo = runpy.run_path(str(ROOT / 'demo' / 'seg_demo.py'))
    cfg = CONFIGS / 'upernet_dwnet-tiny_8xb2-160k_ade20k-512x512.py'
    with pytest.raises(SystemExit, match='image .*missing.jpg does not exist'):
        demo['main']([str(tmp_path / 'missing.jpg'), str(cfg), str(cfg)])
    with pytest.raises(SystemExit, match='opacity must be in'):
        demo['main']([str(cfg), str(cfg), str(cfg), '--opacity', '0'])
    with pytest.raises(ValueError, match=r'expected an \(H, W, 3\) RGB image'):
        demo['segment_image'](np.zeros((8, 8)), cfg, None, tmp_path / 'x.png')


def test_synthetic_ade20k_read_with_zero_label_ignored(ade20k, tmp_path):
    """The config's ADE20KDataset + test pipeline read the files: label 0 -> 255 (ignored),
    1..5 -> classes 0..4, images at their odd native size."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import mmdwnet  # noqa: F401
    init_default_scope('mmseg')
    cfg = narrow_config(ade20k, tmp_path)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    assert len(dataset) == 3 and dataset.metainfo['classes'][:2] == ('wall', 'building')
    sample = dataset[0]
    assert tuple(sample['inputs'].shape) == (3, 97, 131)
    labels = set(sample['data_samples'].gt_sem_seg.data.unique().tolist())
    raw = np.asarray(Image.open(ade20k / 'annotations' / 'validation' / 'ADE_valid_00000000.png'))
    assert labels == {v - 1 for v in np.unique(raw) if v} | ({255} if (raw == 0).any() else set())
    assert 255 in labels and max(labels - {255}) <= NUM_LABELS - 1
