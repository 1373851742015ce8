"""Export an mmdwnet classifier or backbone to ONNX and check it with onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --shape H W [--dynamic]
        [--output FILE] [--force] [--exporter {dynamo,torchscript}] [--backbone-only]
        [--ort-custom-ops]

What is exported for which config: :mod:`mmdwnet.deployment.onnx`. The graph is compared with
PyTorch on two different random inputs (two batch sizes with ``--dynamic``); the maximum absolute
difference is printed and the tool exits with status 1, writing nothing, if it exceeds
``--tolerance``. The output is checked before the export (an existing file needs ``--force``,
its folder must be writable) and written atomically. ``--ort-custom-ops`` keeps mmdwnet's
operators as onnxruntime custom nodes (:mod:`mmdwnet.deployment.ort_ops`), checked with
onnxruntime-extensions. Needs ``pip install mmdwnet[deploy]``.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from mmdwnet.deployment.onnx import EXPORTERS, OnnxMismatch, export_and_verify


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export an mmdwnet classifier or backbone to ONNX, verified with '
        'onnxruntime.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help="checkpoint file or URL ('none': random weights)")
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='input height and width')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch size (the image size stays --shape: the backbones '
                        'compute paddings from it)')
    parser.add_argument('--output', help='output file (default: the config name + .onnx in '
                        'the current folder)')
    parser.add_argument('--force', action='store_true', help='replace an existing output file')
    parser.add_argument('--exporter', choices=EXPORTERS, default='dynamo',
                        help="'dynamo': torch.onnx.export(dynamo=True) (PyTorch's default); "
                        "'torchscript': the TorchScript-based exporter")
    parser.add_argument('--opset', type=int, default=None,
                        help="ONNX opset (default: the exporter's own; 17 for torchscript)")
    parser.add_argument('--backbone-only', action='store_true',
                        help='export only the backbone of a classifier')
    parser.add_argument('--ort-custom-ops', action='store_true',
                        help="write mmdwnet's operators as onnxruntime custom nodes that run "
                        "mmdwnet's kernels (faster in onnxruntime; running the graph needs "
                        'onnxruntime-extensions, Python and mmdwnet: '
                        'mmdwnet.deployment.ort_ops.session_options) instead of standard ops')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest accepted |onnxruntime - PyTorch| (default: 1e-4)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. model.backbone.arch=small')
    args = parser.parse_args(argv)
    if min(args.shape) < 1:
        parser.error(f'--shape needs positive H W, got {args.shape}')
    if args.tolerance <= 0:
        parser.error(f'--tolerance must be positive, got {args.tolerance}')
    return args


def main(argv=None):
    args = parse_args(argv)
    output = args.output or osp.splitext(osp.basename(args.config))[0] + '.onnx'
    try:
        export_and_verify(args.config, args.checkpoint, output, args.shape,
                          dynamic=args.dynamic, exporter=args.exporter, opset=args.opset,
                          backbone_only=args.backbone_only, tolerance=args.tolerance,
                          cfg_options=args.cfg_options, force=args.force,
                          custom_ops=args.ort_custom_ops)
    except (ImportError, OnnxMismatch, OSError) as e:  # OSError: missing / unwritable files
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
