"""Split a segmentor's mIoU into finding the objects and naming them.

See :mod:`mmdwnet.analysis.seg_errors`. Example (the demo's UPerNet)::

    python tools/analysis_tools/seg_error_breakdown.py \\
        configs/segmentation/digits/upernet_dwnet-nano_1xb8-digit-scenes.py \\
        work_dirs/demo/upernet_dwnet-nano_1xb8-digit-scenes/iter_6000.pth
"""
import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mmdwnet.analysis.seg_errors import breakdown, confusion, stride_ceiling_confusion


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--data-root', default='data/digit_scenes/ade',
                        help='ADE20K-layout folder (images/<split>, annotations/<split>)')
    parser.add_argument('--split', default='validation')
    parser.add_argument('--stride', type=int, default=4, help="the decode head's output stride")
    parser.add_argument('--limit', type=int, default=None, help='first N images only')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmseg.apis import inference_model

    from mmdwnet.apis import init_model
    images = sorted((Path(args.data_root) / 'images' / args.split).glob('*.jpg'))[:args.limit]
    if not images:
        raise SystemExit(f'error: no images/{args.split}/*.jpg under {args.data_root}')
    model = init_model(args.config, args.checkpoint, device='cpu')
    num_classes = len(model.dataset_meta['classes'])
    conf = np.zeros((num_classes, num_classes), np.int64)
    ceiling = np.zeros_like(conf)
    for path in images:
        ann = Path(args.data_root) / 'annotations' / args.split / (path.stem + '.png')
        gt = np.asarray(Image.open(ann))
        pred = inference_model(model, str(path)).pred_sem_seg.data[0].numpy()
        conf += confusion(gt, pred, num_classes)
        ceiling += stride_ceiling_confusion(gt, num_classes, args.stride)
    result = breakdown(conf)
    result['ceiling_miou'] = breakdown(ceiling)['miou']
    result['images'] = len(images)
    print(json.dumps(result, indent=1))
    return result


if __name__ == '__main__':
    main()
