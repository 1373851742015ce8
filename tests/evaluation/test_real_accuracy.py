"""ReaLAccuracy (ImageNet-ReaL labels) on a synthetic validation folder and label file."""
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from PIL import Image

import mmdwnet  # noqa: F401  (registers ReaLAccuracy into mmpretrain's METRICS)
from mmdwnet.evaluation import ReaLAccuracy, ReaLLabelsError

ROOT = Path(__file__).resolve().parents[2]
CLS = ROOT / 'configs' / 'classification'
WNIDS = ['n01440764', 'n01443537', 'n01484850']
N = 12  # validation images ILSVRC2012_val_00000001 .. 00000012
# ReaL labels per image: single, multi-label and empty lists (left out of the score)
LABELS = [[0], [1, 2], [], [5], [7, 3], [], [9], [10, 11, 12], [4], [], [999], [6]]
# Top-1 prediction per image: correct, in a multi-label list, wrong, or on an empty-list image
TOP1 = [0, 2, 3, 6, 7, 1, 9, 12, 8, 4, 998, 6]


def independent_real_top1(labels, top1):
    """timm's rule written out: mean over images with a non-empty list of [top1 in list]."""
    hits = [float(p in lab) for p, lab in zip(top1, labels) if lab]
    return 100.0 * sum(hits) / len(hits), len(hits)


@pytest.fixture(scope='module')
def val_set(tmp_path_factory):
    """data_root/val/<wnid>/ILSVRC2012_val_NNNNNNNN.JPEG (images spread over class folders in
    an order unrelated to their numbers) and real.json with ``N`` entries."""
    root = tmp_path_factory.mktemp('real')
    rng = np.random.default_rng(0)
    for i in range(1, N + 1):
        folder = root / 'val' / WNIDS[(i * 7) % len(WNIDS)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (9, 11, 3)).astype(np.uint8)).save(
            folder / f'ILSVRC2012_val_{i:08d}.JPEG')
    (root / 'real.json').write_text(json.dumps(LABELS))
    from mmdwnet.datasets import ImageNetFolder
    dataset = ImageNetFolder(data_root=str(root), split='val', metainfo=dict(classes=WNIDS),
                             pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    samples = [dataset[i]['data_samples'] for i in range(len(dataset))]
    return dict(root=root, ann=str(root / 'real.json'), samples=samples)


def predicted(sample, top1, ranked=()):
    """``sample`` with a pred_score whose argmax is ``top1`` (then ``ranked`` classes)."""
    index = int(Path(sample.img_path).stem.rsplit('_', 1)[1]) - 1
    score = torch.rand(1000, generator=torch.Generator().manual_seed(index)) * 0.1
    for rank, c in enumerate([top1[index], *ranked]):
        score[c] = 2.0 - rank * 0.1
    return sample.clone().set_pred_score(score)


def evaluate(samples, ann, batch_sizes, seed, **kwargs):
    """Shuffle ``samples``, feed them in batches of the given sizes, return the metrics."""
    samples = list(samples)
    random.Random(seed).shuffle(samples)
    evaluator = Evaluator(ReaLAccuracy(ann_file=ann, num_images=N, **kwargs))
    start = 0
    for size in batch_sizes:
        evaluator.process(data_samples=samples[start:start + size])
        start += size
    assert start == len(samples)
    return evaluator.evaluate(len(samples))


def test_real_top1_matches_an_independent_computation(val_set):
    samples = [predicted(s, TOP1) for s in val_set['samples']]
    expected, count = independent_real_top1(LABELS, TOP1)
    assert count == 9 and expected == pytest.approx(100 * 6 / 9)  # the fixture's design
    results = {frozenset(evaluate(samples, val_set['ann'], sizes, seed).items())
               for seed, sizes in enumerate([[N], [5, 7], [1] * N, [3, 4, 5]])}
    assert len(results) == 1  # any order and batch split: the same score
    metrics = dict(results.pop())
    assert metrics['real/top1'] == pytest.approx(expected)
    assert metrics['real/num_images'] == count


def test_images_are_found_by_name_not_by_position(val_set):
    """Predictions that are right for each image's own labels score 100 in any order; the same
    predictions matched by batch position would not."""
    top1 = [lab[-1] if lab else 0 for lab in LABELS]
    samples = [predicted(s, top1) for s in val_set['samples']]
    metrics = evaluate(samples, val_set['ann'], [4, 8], seed=3)
    assert metrics['real/top1'] == 100.0 and metrics['real/num_images'] == 9
    by_position, _ = independent_real_top1(LABELS, [top1[i] for i in range(N)][::-1])
    assert by_position < 100.0


def test_top5_counts_any_of_the_five_highest_scores(val_set):
    # image 4 (labels [5]) predicts 6 first and 5 fourth; image 11 (labels [999]) never has it
    samples = [predicted(s, TOP1, ranked=[100, 101, 5, 102]) for s in val_set['samples']]
    metrics = evaluate(samples, val_set['ann'], [N], seed=0, topk=(1, 5))
    hits5 = [any(c in lab for c in [t, 100, 101, 5, 102]) for t, lab in zip(TOP1, LABELS) if lab]
    assert metrics['real/top5'] == pytest.approx(100.0 * sum(hits5) / len(hits5))
    assert metrics['real/top5'] > metrics['real/top1']


def test_pred_label_without_scores_gives_top1(val_set):
    samples = []
    for s in val_set['samples']:
        index = int(Path(s.img_path).stem.rsplit('_', 1)[1]) - 1
        samples.append(s.clone().set_pred_label(TOP1[index]))
    metrics = evaluate(samples, val_set['ann'], [6, 6], seed=1)
    assert metrics['real/top1'] == pytest.approx(independent_real_top1(LABELS, TOP1)[0])


@pytest.mark.parametrize('content, message', [
    ('{"0": [1]}', 'JSON list of 12'),
    ('[[1], [2]]', 'got a list of 2'),
    ('not json', 'not valid JSON'),
    (json.dumps([[1]] * 11 + [5]), 'entry 11'),
    (json.dumps([[1]] * 11 + [[1000]]), 'in 0..999'),
    (json.dumps([[1]] * 11 + [[-1]]), 'in 0..999'),
    (json.dumps([[1]] * 11 + [[1.0]]), 'entry 11'),
    (json.dumps([[1]] * 11 + [[True]]), 'entry 11'),
])
def test_malformed_label_files_are_clear_errors(tmp_path, content, message):
    ann = tmp_path / 'real.json'
    ann.write_text(content)
    with pytest.raises(ReaLLabelsError, match=message):
        ReaLAccuracy(ann_file=str(ann), num_images=N)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match='reassessed-imagenet'):
        ReaLAccuracy(ann_file=str(tmp_path / 'real.json'))


def test_default_count_is_the_published_50000(val_set):
    with pytest.raises(ReaLLabelsError, match='50000 label lists'):
        ReaLAccuracy(ann_file=val_set['ann'])


@pytest.mark.parametrize('name', ['n01440764_3.JPEG', 'ILSVRC2012_val_00000000.JPEG',
                                  'ILSVRC2012_val_00000013.JPEG', 'ILSVRC2012_val_1.JPEG'])
def test_unmappable_file_names_fail_before_any_score(val_set, name):
    samples = [predicted(s, TOP1) for s in val_set['samples']]
    samples[5].set_metainfo(dict(img_path=f'/data/val/{name}'))
    with pytest.raises(ReaLLabelsError, match='cannot map image'):
        evaluate(samples, val_set['ann'], [N], seed=0)


def test_no_scored_image_duplicates_and_bad_topk_are_errors(val_set, tmp_path):
    samples = [predicted(s, TOP1) for s in val_set['samples']]
    empty = [s for s in samples if not LABELS[int(Path(s.img_path).stem[-8:]) - 1]]
    with pytest.raises(ReaLLabelsError, match='nothing to score'):
        evaluate(empty, val_set['ann'], [len(empty)], seed=0)
    with pytest.raises(ReaLLabelsError, match='predicted twice'):
        evaluate(samples + samples[:1], val_set['ann'], [N + 1], seed=0)
    with pytest.raises(ValueError, match='topk'):
        ReaLAccuracy(ann_file=val_set['ann'], num_images=N, topk=(0, ))


def test_real_configs_score_top1_and_real(val_set):
    """Every *_real.py config: the Table 2 model with Accuracy and ReaLAccuracy, registered in
    mmpretrain's METRICS by ``import mmdwnet``."""
    names = sorted(p.name for p in CLS.glob('*_real.py'))
    assert len(names) == 10
    for name in names:
        cfg = Config.fromfile(str(CLS / name))
        base = Config.fromfile(str(CLS / name.replace('_real.py', '.py')))
        assert cfg.model == base.model and cfg.test_evaluator == cfg.val_evaluator
        assert [m['type'] for m in cfg.test_evaluator] == ['Accuracy', 'ReaLAccuracy']
    metrics = cfg.test_evaluator
    metrics[1].update(ann_file=val_set['ann'], num_images=N)
    from mmpretrain.registry import METRICS
    evaluator = Evaluator([METRICS.build(m) for m in metrics])
    samples = [predicted(s, TOP1) for s in val_set['samples']]
    for s in samples:
        s.set_gt_label(WNIDS.index(Path(s.img_path).parent.name))
    evaluator.process(data_samples=samples)
    out = evaluator.evaluate(N)
    assert set(out) == {'accuracy/top1', 'accuracy/top5', 'real/top1', 'real/num_images'}
    assert out['real/top1'] == pytest.approx(independent_real_top1(LABELS, TOP1)[0])


def test_docs_give_the_source_and_the_paper_numbers(repo_root, paper_tables):
    text = (repo_root / 'docs' / 'classification.md').read_text()
    assert 'github.com/google-research/reassessed-imagenet' in text
    for row in paper_tables['imagenet_table2'].values():
        assert f"{row['real']}" in text
