"""Export an mmdwnet classifier or backbone to ONNX and check it with onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --shape H W [--dynamic]
        [--output FILE] [--force] [--exporter {dynamo,torchscript}] [--backbone-only]

* a classification config (``default_scope='mmpretrain'``): the whole classifier, input the
  normalised (N, 3, H, W) image (the data preprocessor's mean/std and BGR->RGB are not part of
  the graph), output the class scores before softmax; ``--backbone-only``: its backbone;
* a detection / segmentation config: its backbone (input the normalised image, outputs the
  stage features);
* a config whose ``model`` is a backbone alone: that backbone.

The graph is compared with PyTorch on two different random inputs (two batch sizes with
``--dynamic``); the maximum absolute difference is printed and the tool exits with status 1,
writing nothing, if it exceeds ``--tolerance``.  The file is written atomically (a temporary
file in the destination folder, then renamed) and an existing file is only replaced with
``--force``.  Needs ``pip install mmdwnet[deploy]`` (onnx, onnxruntime, onnxscript).
"""
import argparse
import io
import os.path as osp
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import DictAction

from mmdwnet.utils.fileio import atomic_open

EXPORTERS = ('dynamo', 'torchscript')


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


class _Outputs(nn.Module):
    """``net(x)`` as a flat tuple of tensors (what exporters and onnxruntime exchange)."""

    def __init__(self, net, classifier):
        super().__init__()
        self.net, self.classifier = net, classifier

    def forward(self, x):
        out = self.net(x, mode='tensor') if self.classifier else self.net(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out, )


def build_network(args):
    """(module to export, what it is) for the config and checkpoint of ``args``."""
    from mmdwnet.apis import init_model
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    if checkpoint is None:
        warnings.warn("checkpoint 'none': exporting randomly initialised weights")
    elif '://' not in checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist (give a file, a URL '
                                "or 'none')")
    model = init_model(args.config, checkpoint, device='cpu', cfg_options=args.cfg_options)
    scope = model.cfg.get('default_scope', None)
    if scope == 'mmpretrain' and not args.backbone_only:
        return _Outputs(model, classifier=True).eval(), 'classifier'
    if scope is not None or args.backbone_only:
        backbone = getattr(model, 'backbone', None)
        if backbone is None:
            raise ValueError(f'{type(model).__name__} of {args.config} has no backbone to export')
        return _Outputs(backbone, classifier=False).eval(), f'backbone of the {scope} model'
    return _Outputs(model, classifier=False).eval(), 'backbone'


def export_onnx(net, example, exporter, dynamic, opset=None):
    """Serialized ONNX model of ``net`` traced at ``example``."""
    if exporter == 'torchscript':
        f = io.BytesIO()
        with warnings.catch_warnings():
            # size-dependent paddings traced as constants: expected, the image size is fixed
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            torch.onnx.export(net, (example, ), f, dynamo=False, opset_version=opset or 17,
                              input_names=['input'],
                              dynamic_axes={'input': {0: 'batch'}} if dynamic else None)
        return f.getvalue()
    dynamic_shapes = ({0: torch.export.Dim('batch', min=1, max=1024)}, ) if dynamic else None
    program = torch.onnx.export(net, (example, ), dynamo=True, opset_version=opset,
                                dynamic_shapes=dynamic_shapes, external_data=False,
                                verbose=False)
    return program.model_proto.SerializeToString()


def verify(net, model_bytes, inputs):
    """Max |onnxruntime - PyTorch| over all outputs, per input."""
    import onnxruntime as ort
    sess = ort.InferenceSession(model_bytes, providers=['CPUExecutionProvider'])
    name = sess.get_inputs()[0].name
    diffs = []
    for x in inputs:
        with torch.no_grad():
            expected = [t.numpy() for t in net(x)]
        got = sess.run(None, {name: x.numpy()})
        if len(got) != len(expected):
            raise RuntimeError(f'the ONNX graph has {len(got)} outputs, PyTorch {len(expected)}')
        diffs.append(max(float(np.abs(g - e).max()) for g, e in zip(got, expected)))
    return diffs


def main(argv=None):
    args = parse_args(argv)
    for module in ('onnx', 'onnxruntime') + (('onnxscript', ) if args.exporter == 'dynamo'
                                              else ()):
        try:
            __import__(module)
        except ImportError:
            sys.exit(f'error: {module} is not installed; run `pip install mmdwnet[deploy]` '
                     '(or `pip install -r requirements/deploy.txt`)')
    output = args.output or osp.splitext(osp.basename(args.config))[0] + '.onnx'
    if osp.exists(output) and not args.force:
        sys.exit(f'error: {output} exists; pass --force to replace it or choose --output')

    net, what = build_network(args)
    h, w = args.shape
    gen = torch.Generator().manual_seed(0)
    # dynamo specialises a batch of 1, so a dynamic export traces a batch of 2
    example = torch.randn(2 if args.dynamic else 1, 3, h, w, generator=gen)
    second = torch.randn(3 if args.dynamic else 1, 3, h, w, generator=gen)
    print(f'exporting the {what} ({args.exporter} exporter, input {tuple(example.shape)}'
          f'{", dynamic batch" if args.dynamic else ""})')
    model_bytes = export_onnx(net, example, args.exporter, args.dynamic, args.opset)

    diffs = verify(net, model_bytes, [example, second])
    worst = max(diffs)
    print(f'onnxruntime vs PyTorch: max abs diff {worst:.3g} '
          f'(inputs of batch {example.shape[0]} and {second.shape[0]}: '
          f'{", ".join(f"{d:.3g}" for d in diffs)}; tolerance {args.tolerance:g})')
    if not worst <= args.tolerance:
        sys.exit(f'error: the exported graph differs from PyTorch by {worst:.3g} > '
                 f'{args.tolerance:g}; {output} was not written')
    try:
        with atomic_open(output, 'wb', replace=args.force) as f:  # never replaces unless --force
            f.write(model_bytes)
    except FileExistsError:
        sys.exit(f'error: {output} appeared during the export; pass --force to replace it')
    print(f'wrote {output} ({len(model_bytes) / 2**20:.1f} MiB)')


if __name__ == '__main__':
    main()
