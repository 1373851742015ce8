"""ImageNet-ReaL accuracy (Beyer et al. 2020, "Are we done with ImageNet?").

The reassessed labels are published as ``real.json`` (github.com/google-research/
reassessed-imagenet): a JSON list of 50,000 lists of class indices, entry ``i`` for the
validation image ``ILSVRC2012_val_{i+1:08d}.JPEG``.  A prediction is correct when it is in the
image's list; images whose list is empty are left out, as in the paper's code and timm's
``RealLabelsImagenet``.
"""
import json
import os.path as osp
import re
from typing import Any, List, Optional, Sequence, Union

from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

REAL_URL = 'https://github.com/google-research/reassessed-imagenet/raw/master/real.json'
_VAL_NAME = re.compile(r'^ILSVRC2012_val_(\d{8})\.[A-Za-z]+$')


class ReaLLabelsError(ValueError):
    """``real.json`` is missing, malformed, or an image cannot be matched to it."""


def load_real_labels(ann_file: str, num_images: int = 50000,
                     num_classes: int = 1000) -> List[List[int]]:
    """Read and validate ``real.json``.

    Args:
        ann_file (str): path of the file.
        num_images (int): entries expected (50,000 for the published file).
        num_classes (int): labels must lie in ``0..num_classes-1``.

    Returns:
        list[list[int]]: the label list of each validation image, in file-name order.

    Raises:
        FileNotFoundError: the file does not exist.
        ReaLLabelsError: it is not a JSON list of ``num_images`` lists of class indices.
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(
            f'ReaLAccuracy: ann_file {ann_file!r} does not exist. Download real.json from '
            f'{REAL_URL} (google-research/reassessed-imagenet) and pass its path as ann_file.')
    try:
        with open(ann_file, encoding='utf-8') as f:
            labels = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReaLLabelsError(f'ReaLAccuracy: {ann_file!r} is not valid JSON ({e}); expected '
                              f'the real.json of {REAL_URL}') from e
    if not isinstance(labels, list) or len(labels) != num_images:
        got = f'a list of {len(labels)}' if isinstance(labels, list) else type(labels).__name__
        raise ReaLLabelsError(f'ReaLAccuracy: {ann_file!r} must hold a JSON list of '
                              f'{num_images} label lists (one per validation image), got {got}')
    for i, entry in enumerate(labels):
        if not isinstance(entry, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c < num_classes
                for c in entry):
            raise ReaLLabelsError(
                f'ReaLAccuracy: entry {i} of {ann_file!r} (image ILSVRC2012_val_{i + 1:08d}) '
                f'must be a list of class indices in 0..{num_classes - 1}, got {entry!r}')
    return labels


def image_index(img_path: str, num_images: int = 50000) -> int:
    """0-based index of a validation image from its file name ``ILSVRC2012_val_NNNNNNNN.*``."""
    match = _VAL_NAME.match(osp.basename(str(img_path)))
    number = int(match.group(1)) if match else 0
    if not 1 <= number <= num_images:
        raise ReaLLabelsError(
            f'ReaLAccuracy: cannot map image {img_path!r} to a ReaL label: the file name must be '
            f'ILSVRC2012_val_NNNNNNNN.<ext> with NNNNNNNN in 1..{num_images} (the ImageNet '
            'validation images, under their original names)')
    return number - 1


@METRICS.register_module()
class ReaLAccuracy(BaseMetric):
    """Top-k accuracy against the ImageNet-ReaL labels.

    Every image is found by its file name (``img_path`` of the data sample), never by its
    position in the batch, so any order, sampler and batch split gives the same score.

    Args:
        ann_file (str): ``real.json``. Default: ``'data/imagenet/real.json'``.
        topk (int | Sequence[int]): an image counts as correct at ``k`` when one of its ``k``
            highest-scoring classes is in its ReaL list. Default: ``(1,)``.
        num_images (int): entries of the file; the published file has 50,000 (change it only
            for synthetic test files). Default: 50000.
        num_classes (int): Default: 1000.
        collect_device (str): ``'cpu'`` or ``'gpu'``, see :class:`~mmengine.evaluator.BaseMetric`.
        prefix (str | None): metric name prefix. Default: ``'real'``.

    Metrics:
        ``real/top{k}`` (percent, over the scored images) and ``real/num_images`` (images with
        a non-empty ReaL list that were scored).
    """
    default_prefix: Optional[str] = 'real'

    def __init__(self,
                 ann_file: str = 'data/imagenet/real.json',
                 topk: Union[int, Sequence[int]] = (1, ),
                 num_images: int = 50000,
                 num_classes: int = 1000,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not self.topk or not all(isinstance(k, int) and 1 <= k <= num_classes
                                    for k in self.topk):
            raise ValueError(f'ReaLAccuracy: topk must be ints in 1..{num_classes}, got {topk!r}')
        self.ann_file, self.num_images = ann_file, num_images
        self.labels = load_real_labels(ann_file, num_images, num_classes)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Keep (image index, top-k class indices) of every sample."""
        k = max(self.topk)
        for sample in data_samples:
            if 'img_path' not in sample:
                raise ReaLLabelsError(
                    'ReaLAccuracy: the data sample has no img_path; keep img_path in the meta '
                    "keys of PackInputs (mmpretrain's default)")
            index = image_index(sample['img_path'], self.num_images)
            if 'pred_score' in sample:
                pred = sample['pred_score'].topk(k).indices.tolist()
            elif k == 1:
                pred = [int(sample['pred_label'])]
            else:
                raise ReaLLabelsError(f'ReaLAccuracy: top-{k} needs pred_score in the samples')
            self.results.append((index, pred))

    def compute_metrics(self, results: list) -> dict:
        """``real/top{k}`` and ``real/num_images`` over the images with a ReaL label."""
        seen = set()
        correct = dict.fromkeys(self.topk, 0)
        scored = 0
        for index, pred in results:
            if index in seen:
                raise ReaLLabelsError(
                    f'ReaLAccuracy: image ILSVRC2012_val_{index + 1:08d} was predicted twice; '
                    'each validation image must appear once in the evaluated dataset')
            seen.add(index)
            real = self.labels[index]
            if not real:
                continue
            scored += 1
            for k in self.topk:
                correct[k] += any(c in real for c in pred[:k])
        if scored == 0:
            raise ReaLLabelsError(
                f'ReaLAccuracy: none of the {len(results)} evaluated images has a ReaL label in '
                f'{self.ann_file!r}; nothing to score')
        metrics = {f'top{k}': 100.0 * correct[k] / scored for k in self.topk}
        metrics['num_images'] = scored
        return metrics
