"""demo/digit_scenes.py: the COCO and ADE20K files it writes, as pycocotools, mmdet and mmseg read
them through the digit-scenes configs; split disjointness, determinism, refusals."""
import filecmp
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'demo'))
import digit_scenes  # noqa: E402

SMALL = dict(seed=3, train_scenes=6, val_scenes=4)
DET_CFG = ROOT / 'configs/detection/digits/cascade-mask-rcnn_dwnet-nano_fpn_1xb4-digit-scenes.py'
SEG_CFG = ROOT / 'configs/segmentation/digits/upernet_dwnet-nano_1xb8-digit-scenes.py'


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    return digit_scenes.write_scenes(tmp_path_factory.mktemp('ds') / 'scenes', verbose=False,
                                     **SMALL)


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob('*') if p.is_file())


def test_layout_and_categories(scenes):
    for split, (coco, ade) in digit_scenes.SPLITS.items():
        n = SMALL[f'{split}_scenes']
        assert len(list((scenes / 'coco' / coco).glob('*.jpg'))) == n
        assert len(list((scenes / 'ade' / 'images' / ade).glob('*.jpg'))) == n
        assert len(list((scenes / 'ade' / 'annotations' / ade).glob('*.png'))) == n
        data = json.loads((scenes / 'coco' / 'annotations' / f'instances_{coco}.json')
                          .read_text())
        assert [(c['id'], c['name']) for c in data['categories']] == \
            [(d + 1, str(d)) for d in range(10)]


@pytest.mark.parametrize('split', ['train', 'val'])
def test_coco_masks_boxes_and_label_maps_agree(scenes, split):
    """pycocotools reads the RLE masks; each box is its mask's extent; the ADE label map is the
    union of the instance masks (pixel value = digit + 1), background 0 elsewhere."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    coco_name, ade_name = digit_scenes.SPLITS[split]
    coco = COCO(str(scenes / 'coco' / 'annotations' / f'instances_{coco_name}.json'))
    sizes = set()
    for img in coco.loadImgs(coco.getImgIds()):
        w, h = img['width'], img['height']
        sizes.add((w, h))
        assert 96 <= w <= 192 and 96 <= h <= 192
        with Image.open(scenes / 'coco' / coco_name / img['file_name']) as jpg:
            assert jpg.size == (w, h) and jpg.mode == 'RGB'
        label_map = np.asarray(Image.open(scenes / 'ade' / 'annotations' / ade_name /
                                          img['file_name'].replace('.jpg', '.png')))
        assert label_map.shape == (h, w)
        expected = np.zeros((h, w), np.uint8)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
        assert 1 <= len(anns) <= 5
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            assert mask_utils.decode(ann['segmentation']).sum() == ann['area'] == mask.sum() > 0
            ys, xs = np.nonzero(mask)
            assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                   ys.max() - ys.min() + 1]
            assert 8 <= ann['bbox'][3] <= 48
            assert not (expected[mask]).any()  # visible strokes of two digits never overlap
            expected[mask] = ann['category_id']
        np.testing.assert_array_equal(label_map, expected)
        assert (label_map == 0).mean() > 0.5  # mostly background
    assert len(sizes) > 1  # canvases of varying size


def test_backgrounds_are_photos_not_black(scenes):
    img = np.asarray(Image.open(scenes / 'ade' / 'images' / 'validation' / '000001.jpg'))
    label = np.asarray(Image.open(scenes / 'ade' / 'annotations' / 'validation' / '000001.png'))
    background = img[label == 0].astype(float)
    assert background.mean() > 20 and background.std() > 5


def test_train_and_val_draw_from_disjoint_digits(scenes):
    used = {}
    for split, (coco, _) in digit_scenes.SPLITS.items():
        data = json.loads((scenes / 'coco' / 'annotations' / f'instances_{coco}.json')
                          .read_text())
        used[split] = {a['digit_index'] for a in data['annotations']}
        pool = set(digit_scenes.split_indices()[split].tolist())
        assert used[split] <= pool
    assert used['train'] and used['val'] and not used['train'] & used['val']
    pools = digit_scenes.split_indices()
    assert not set(pools['train']) & set(pools['val'])
    assert all(i % 5 == 0 for i in pools['val'])  # the classification demo's val split


def test_same_seed_same_files_other_seed_other_files(scenes, tmp_path):
    again = digit_scenes.write_scenes(tmp_path / 'again', verbose=False, **SMALL)
    files = _files(scenes)
    assert files == _files(again)
    _, mismatch, errors = filecmp.cmpfiles(scenes, again, [str(f) for f in files],
                                           shallow=False)
    assert not mismatch and not errors
    other = digit_scenes.write_scenes(tmp_path / 'other', verbose=False,
                                      **dict(SMALL, seed=4))
    name = 'coco/annotations/instances_val.json'
    assert (other / name).read_text() != (scenes / name).read_text()


def test_existing_folders_are_reused_or_refused(scenes, tmp_path):
    stamp = (scenes / digit_scenes.STAMP).stat().st_mtime_ns
    assert digit_scenes.write_scenes(scenes, verbose=False, **SMALL) == scenes
    assert (scenes / digit_scenes.STAMP).stat().st_mtime_ns == stamp  # not rewritten
    with pytest.raises(FileExistsError, match='other options'):
        digit_scenes.write_scenes(scenes, verbose=False, **dict(SMALL, seed=9))
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not a finished digit-scenes folder'):
        digit_scenes.write_scenes(foreign, verbose=False, **SMALL)
    assert _files(foreign) == [Path('keep.txt')]
    with pytest.raises(TypeError, match='unknown option'):
        digit_scenes.write_scenes(tmp_path / 'x', verbose=False, seeds=1)


@pytest.mark.parametrize('args, message', [
    (['--min-digit', '40', '--max-digit', '30'], '--min-digit 40 is larger than --max-digit 30'),
    (['--max-overlap', '1.5'], '--max-overlap must be in'),
    (['--train-scenes', '0'], 'train-scenes must be at least 1'),
    (['--max-digit', '120'], 'does not fit a --min-size 96 canvas'),
    (['--min-size', '200'], '--min-size 200 is larger than --max-size 192'),
])
def test_bad_arguments_are_clear_errors(args, message, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / 'demo' / 'digit_scenes.py'), '--out',
                           str(tmp_path / 'out'), *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / 'out').exists()


def _override_root(cfg, root):
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(root)


def test_mmseg_dataset_reads_the_ade_layout_through_the_config(scenes):
    """The segmentation config's dataset (data_root overridden alone): 11 classes, background
    kept as class 0 (reduce_zero_label=False), labels as written."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    import mmdwnet  # noqa: F401
    cfg = Config.fromfile(str(SEG_CFG))
    _override_root(cfg, scenes / 'ade')
    init_default_scope('mmseg')
    val = DATASETS.build(cfg.val_dataloader.dataset)
    train = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(val) == SMALL['val_scenes'] and len(train) == SMALL['train_scenes']
    assert val.metainfo['classes'] == digit_scenes.SEG_CLASSES
    sample = val[0]
    seg = sample['data_samples'].gt_sem_seg.data.numpy()[0]
    written = np.asarray(Image.open(
        scenes / 'ade' / 'annotations' / 'validation' /
        Path(sample['data_samples'].img_path).name.replace('.jpg', '.png')))
    np.testing.assert_array_equal(seg, written)
    assert 0 in seg and seg.max() <= 10
    crop = train[0]['data_samples'].gt_sem_seg.data
    assert tuple(crop.shape[-2:]) == (96, 96) and int(crop.max()) <= 10  # no 255 padding


def test_mmdet_dataset_reads_the_coco_files_through_the_config(scenes):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import DATASETS
    import mmdwnet  # noqa: F401
    cfg = Config.fromfile(str(DET_CFG))
    _override_root(cfg, str(scenes / 'coco') + '/')
    init_default_scope('mmdet')
    val = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(val) == SMALL['val_scenes'] and val.metainfo['classes'] == digit_scenes.CLASSES
    sample = val[0]['data_samples']
    ann = json.loads((scenes / 'coco' / 'annotations' / 'instances_val.json').read_text())
    first = [a for a in ann['annotations'] if a['image_id'] == sample.img_id]
    assert sorted(sample.gt_instances.labels.tolist()) == sorted(a['category_id'] - 1
                                                                 for a in first)
    masks = sample.gt_instances.masks.to_ndarray()
    assert sorted(masks.sum((1, 2)).tolist()) == sorted(a['area'] for a in first)
