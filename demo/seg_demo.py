"""Segment one image with an mmdwnet UPerNet and save the coloured overlay.

    python demo/seg_demo.py IMG CONFIG CHECKPOINT [--out-file OUT.png] [--device cpu]
                            [--opacity 0.5] [--no-labels]

Uses mmseg's ``inference_model`` (the config's test pipeline) and ``SegLocalVisualizer``.
Class names and colours come from the checkpoint's ``dataset_meta`` when it has one, else
from the dataset class of the config's test set (ADE20K for the configs in this repo).
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

import numpy as np

from mmdwnet.apis import init_model
from mmdwnet.apis.demo_utils import dataset_meta_of as _dataset_meta_of
from mmdwnet.apis.demo_utils import read_rgb_image


def dataset_meta_of(model):
    """``model.dataset_meta`` or the METAINFO of the config's test dataset."""
    from mmseg.registry import DATASETS
    return _dataset_meta_of(model, DATASETS, ('classes', 'palette'), 'the class names and colours')


def segment_image(img, config, checkpoint, out_file, device='cpu', opacity=0.5,
                  with_labels=True):
    """Run the segmentor on ``img`` (path or RGB array) and write the overlay to ``out_file``.

    Returns:
        tuple: (overlay as an (H, W, 3) RGB uint8 array, predicted (H, W) label map).
    """
    from mmseg.apis import inference_model
    from mmseg.visualization import SegLocalVisualizer

    image, model_input = read_rgb_image(img)
    model = init_model(str(config), None if checkpoint is None else str(checkpoint),
                       device=device)
    model.dataset_meta = dataset_meta_of(model)
    result = inference_model(model, model_input)
    visualizer = SegLocalVisualizer(name=f'seg_demo_{id(result)}', alpha=opacity)
    visualizer.dataset_meta = model.dataset_meta
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    visualizer.add_datasample('prediction', image, data_sample=result, draw_gt=False,
                              out_file=str(out_file), with_labels=with_labels)
    labels = result.pred_sem_seg.data[0].cpu().numpy()
    return visualizer.get_image(), labels


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='segmentation config')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-file', default='seg_result.png', help='overlay to write')
    parser.add_argument('--device', default='cpu', help='e.g. cpu or cuda:0')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='opacity of the class colours, in (0, 1]')
    parser.add_argument('--no-labels', action='store_true', help='do not write class names')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not 0 < args.opacity <= 1:
        sys.exit(f'error: --opacity must be in (0, 1], got {args.opacity}')
    for path, what in ((args.img, 'image'), (args.config, 'config file'),
                       (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            sys.exit(f'error: {what} {path} does not exist')
    _, labels = segment_image(args.img, args.config, args.checkpoint, args.out_file,
                              args.device, args.opacity, not args.no_labels)
    present = np.unique(labels)
    print(f'{args.out_file}: {labels.shape[1]}x{labels.shape[0]}, '
          f'{len(present)} classes predicted')
    return 0


if __name__ == '__main__':
    sys.exit(main())
