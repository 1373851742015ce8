"""End to end on a synthetic COCO dataset (CPU): train with tools/train.py, evaluate bbox and
segm mAP with tools/test.py, visualise inference on a real photo."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from test_detection_configs import tiny_detector_cfg

CLASSES = ('person', 'car', 'dog')
# (width, height): odd sizes, not multiples of 4, 7 or 32
# two landscape and two portrait images: mmdet's AspectRatioBatchSampler batches them by
# orientation, and the train loaders drop a short last batch (drop_last), so 2 full batches
TRAIN_SIZES = [(131, 97), (97, 131), (150, 113), (89, 123)]
VAL_SIZES = [(131, 97), (109, 143)]


def _draw_instances(rng, width, height, n):
    """Random rectangles / triangles / ellipses -> (image, list of (cat index, polygon))."""
    img = Image.new('RGB', (width, height), tuple(int(c) for c in rng.integers(0, 80, 3)))
    draw = ImageDraw.Draw(img)
    instances = []
    for _ in range(n):
        cat = int(rng.integers(0, len(CLASSES)))
        w, h = rng.integers(24, min(width, height) // 2, 2)
        x0, y0 = rng.integers(0, width - w), rng.integers(0, height - h)
        x1, y1 = x0 + w, y0 + h
        if cat == 0:
            poly = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        elif cat == 1:
            poly = [((x0 + x1) / 2, y0), (x1, y1), (x0, y1)]
        else:
            t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
            poly = list(zip((x0 + x1) / 2 + w / 2 * np.cos(t), (y0 + y1) / 2 + h / 2 * np.sin(t)))
        color = ((200, 60, 60), (60, 200, 60), (60, 60, 220))[cat]
        draw.polygon([(float(x), float(y)) for x, y in poly], fill=color)
        instances.append((cat, [float(v) for xy in poly for v in xy]))
    return img, instances


def make_coco(root, seed=0):
    """Write ``annotations/instances_{train,val}2017.json``, ``train2017/``, ``val2017/``."""
    rng = np.random.default_rng(seed)
    categories = [dict(id=i + 1, name=name, supercategory='thing')
                  for i, name in enumerate(CLASSES)]
    (root / 'annotations').mkdir(parents=True)
    ann_id = 1
    for split, sizes in (('train2017', TRAIN_SIZES), ('val2017', VAL_SIZES)):
        (root / split).mkdir()
        images, annotations = [], []
        for img_id, (w, h) in enumerate(sizes, 1):
            img, instances = _draw_instances(rng, w, h, n=2)
            name = f'{img_id:012d}.jpg'
            img.save(root / split / name, quality=95)
            images.append(dict(id=img_id, file_name=name, width=w, height=h))
            for cat, poly in instances:
                xs, ys = poly[0::2], poly[1::2]
                box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                annotations.append(dict(id=ann_id, image_id=img_id, category_id=cat + 1,
                                        segmentation=[poly], bbox=box, iscrowd=0,
                                        area=float(box[2] * box[3])))
                ann_id += 1
        (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(
            dict(images=images, annotations=annotations, categories=categories)))
    return root


def _small_scales(pipeline):
    """Shrink the multi-scale pipeline (same structure): shorter side 72..104, crops 48..80."""
    for t in pipeline:
        if t.type == 'RandomChoice':
            for chain in t.transforms:
                for step in chain:
                    if step.type == 'RandomChoiceResize':
                        step.scales = [(160, 72), (160, 88), (160, 104)]
                    elif step.type == 'RandomCrop':
                        step.crop_size = (48, 80)
        elif t.type == 'Resize':
            t.scale = (160, 97)  # keeps a 131x97 image at its odd size


def e2e_cfg(det_dir, data_root, backbone='dwnet'):
    cfg = tiny_detector_cfg(det_dir, backbone)
    cfg.model.data_preprocessor.pad_size_divisor = 1  # odd sizes reach the backbone
    for head in cfg.model.roi_head.bbox_head:
        head.num_classes = len(CLASSES)
    cfg.model.roi_head.mask_head.num_classes = len(CLASSES)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(data_root) + '/', metainfo=dict(classes=CLASSES))
        _small_scales(loader.dataset.pipeline)
    for name in ('val_evaluator', 'test_evaluator'):
        cfg[name].ann_file = str(data_root / 'annotations/instances_val2017.json')
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0)
    return cfg


@pytest.fixture(scope='module')
def det_dir(repo_root):
    return repo_root / 'configs' / 'detection'


@pytest.fixture(scope='module')
def trained(repo_root, det_dir, tmp_path_factory):
    """tools/train.py: one epoch (2 iterations of 2 images) + validation on the synthetic set."""
    tmp = tmp_path_factory.mktemp('det_e2e')
    data_root = make_coco(tmp / 'coco')
    cfg_path = tmp / 'cascade-mask-rcnn_dwnet-narrow_coco.py'
    e2e_cfg(det_dir, data_root).dump(str(cfg_path))
    work_dir = tmp / 'work'
    out = subprocess.run([sys.executable, str(repo_root / 'tools/train.py'), str(cfg_path),
                          '--work-dir', str(work_dir)],
                         capture_output=True, text=True, cwd=repo_root, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    return dict(cfg=cfg_path, work_dir=work_dir, ckpt=work_dir / 'epoch_1.pth', log=log,
                data_root=data_root)


@pytest.mark.slow
def test_train_runs_and_validates(trained):
    assert trained['ckpt'].is_file()
    log = trained['log']
    assert 'Epoch(train)' in log and 'loss_bbox' in log and 'loss_mask' in log
    assert 's0.loss_bbox' in log or 's0.loss_cls' in log  # cascade stages
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
    assert 'reverted to BatchNormXd' in log  # SyncBN -> BN without distribution
    losses = [json.loads(line)['loss'] for line in
              next(trained['work_dir'].glob('*/vis_data/scalars.json')).read_text().splitlines()
              if '"loss"' in line]
    assert len(losses) == 2 and all(np.isfinite(losses))


@pytest.mark.slow
def test_test_tool_prints_bbox_and_segm_map(repo_root, trained, tmp_path):
    out = subprocess.run(
        [sys.executable, str(repo_root / 'tools/test.py'), str(trained['cfg']),
         str(trained['ckpt']), '--work-dir', str(tmp_path), '--out', str(tmp_path / 'r.pkl')],
        capture_output=True, text=True, cwd=repo_root, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert 'bbox_mAP' in log and 'segm_mAP' in log
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all' in log  # COCO table
    import pickle
    results = pickle.loads((tmp_path / 'r.pkl').read_bytes())
    assert len(results) == len(VAL_SIZES)
    shapes = sorted(tuple(r['ori_shape']) for r in results)
    assert shapes == sorted((h, w) for w, h in VAL_SIZES)
    assert (97, 131) in {tuple(r['img_shape']) for r in results}  # odd size at test time


@pytest.mark.slow
def test_inference_on_photo_writes_visualisation(trained, tmp_path):
    """mmdet's inference_detector + DetLocalVisualizer on skimage's astronaut photo."""
    from mmdet.apis import inference_detector, init_detector
    from mmdet.visualization import DetLocalVisualizer
    from skimage import data

    photo = data.astronaut()[:97 * 3, :131 * 3]  # RGB, odd size 291 x 393
    from mmdwnet.utils import safe_loading
    with safe_loading():  # a runner checkpoint: weights-only with mmengine's types (the gate)
        model = init_detector(str(trained['cfg']), str(trained['ckpt']), device='cpu')
    bgr = np.ascontiguousarray(photo[..., ::-1])
    result = inference_detector(model, bgr)
    pred = result.pred_instances
    assert len(pred) > 0 and pred.masks.shape[-2:] == photo.shape[:2]
    assert float(pred.bboxes[:, 2].max()) <= photo.shape[1] + 1e-3
    vis = DetLocalVisualizer(name='det_e2e_vis')
    vis.dataset_meta = model.dataset_meta
    out_file = tmp_path / 'astronaut_det.jpg'
    vis.add_datasample('astronaut', photo, data_sample=result, draw_gt=False, show=False,
                       pred_score_thr=0., out_file=str(out_file))
    assert out_file.is_file()
    drawn = np.asarray(Image.open(out_file).convert('RGB')).astype(np.int16)
    assert drawn.shape == photo.shape
    assert np.abs(drawn - photo).mean() > 2  # boxes and masks were drawn


def test_bad_data_root_fails_with_path(det_dir, tmp_path):
    """A data root without the COCO annotation file names the missing file."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    cfg = e2e_cfg(det_dir, tmp_path / 'missing')
    init_default_scope('mmdet')
    with pytest.raises(FileNotFoundError, match='instances_train2017.json'):
        Runner.build_dataloader(cfg.train_dataloader)


def _load_demo(repo_root):
    from script_loading import load_script
    return load_script(repo_root / 'demo' / 'det_demo.py')


@pytest.mark.slow
def test_demo_script_on_photo_file(repo_root, trained, tmp_path, capsys):
    """demo/det_demo.py (mmdwnet.apis.init_model + inference_detector + DetLocalVisualizer)."""
    from skimage import data
    demo = _load_demo(repo_root)
    photo = data.coffee()[:301, :399]  # odd size
    img_path = tmp_path / 'coffee.png'
    Image.fromarray(photo).save(img_path)
    out_file = tmp_path / 'out' / 'coffee_det.jpg'
    assert demo.main([str(img_path), str(trained['cfg']), str(trained['ckpt']),
                      '--out-file', str(out_file), '--score-thr', '0']) == 0
    assert 'predictions drawn' in capsys.readouterr().out
    drawn = np.asarray(Image.open(out_file).convert('RGB')).astype(np.int16)
    assert drawn.shape == photo.shape and np.abs(drawn - photo).mean() > 2
    with pytest.raises(SystemExit, match='image .*missing.png does not exist'):
        demo.main([str(tmp_path / 'missing.png'), str(trained['cfg']), str(trained['ckpt'])])
    with pytest.raises(SystemExit, match='--score-thr must be in'):
        demo.main([str(img_path), str(trained['cfg']), str(trained['ckpt']), '--score-thr', '2'])
