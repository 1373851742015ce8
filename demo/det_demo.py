"""Detect and segment objects in one image with an mmdwnet Cascade Mask R-CNN; save the drawing.

    python demo/det_demo.py IMG CONFIG CHECKPOINT [--out-file OUT.jpg] [--device cpu]
                            [--score-thr 0.3]

Uses mmdet's ``inference_detector`` (the config's test pipeline) and ``DetLocalVisualizer``
(boxes, masks and class names of the predictions scoring at least ``--score-thr``).  Class
names and colours come from the checkpoint's ``dataset_meta`` when it has one, else from the
dataset class of the config's test set (COCO for the configs in this repo).
"""
import argparse
import os.path as osp
import sys
from pathlib import Path


from mmdwnet.apis import init_model
from mmdwnet.apis.demo_utils import dataset_meta_of as _dataset_meta_of
from mmdwnet.apis.demo_utils import read_rgb_image


def dataset_meta_of(model):
    """``model.dataset_meta`` or the METAINFO of the config's test dataset."""
    from mmdet.registry import DATASETS
    return _dataset_meta_of(model, DATASETS, ('classes', ), 'the class names')


def detect_image(img, config, checkpoint, out_file, device='cpu', score_thr=0.3):
    """Run the detector on ``img`` (path or RGB array) and draw its predictions to ``out_file``.

    Returns:
        tuple: (drawing as an (H, W, 3) RGB uint8 array, the :obj:`DetDataSample` result).
    """
    from mmdet.apis import inference_detector
    from mmdet.visualization import DetLocalVisualizer

    image, model_input = read_rgb_image(img)
    model = init_model(str(config), None if checkpoint is None else str(checkpoint),
                       device=device)
    model.dataset_meta = dataset_meta_of(model)
    result = inference_detector(model, model_input)
    visualizer = DetLocalVisualizer(name=f'det_demo_{id(result)}')
    visualizer.dataset_meta = model.dataset_meta
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    visualizer.add_datasample('prediction', image, data_sample=result, draw_gt=False,
                              pred_score_thr=score_thr, out_file=str(out_file))
    return visualizer.get_image(), result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='detection config')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-file', default='det_result.jpg', help='drawing to write')
    parser.add_argument('--device', default='cpu', help='e.g. cpu or cuda:0')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw predictions scoring at least this, in [0, 1]')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not 0 <= args.score_thr <= 1:
        sys.exit(f'error: --score-thr must be in [0, 1], got {args.score_thr}')
    for path, what in ((args.img, 'image'), (args.config, 'config file'),
                       (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            sys.exit(f'error: {what} {path} does not exist')
    _, result = detect_image(args.img, args.config, args.checkpoint, args.out_file,
                             args.device, args.score_thr)
    scores = result.pred_instances.scores
    print(f'{args.out_file}: {int((scores >= args.score_thr).sum())} of {len(scores)} '
          f'predictions drawn (score >= {args.score_thr})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
