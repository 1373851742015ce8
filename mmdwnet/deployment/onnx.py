"""Export an mmdwnet classifier or backbone to ONNX and check it with onnxruntime.

The logic of ``tools/deployment/pytorch2onnx.py`` (:func:`export_and_verify`) and of
``tools/deployment/onnx_speed.py``:

* a classification config (``default_scope='mmpretrain'``): the whole classifier, input the
  normalised (N, 3, H, W) image (the data preprocessor's mean/std and BGR->RGB are not part of
  the graph), output the class scores before softmax; ``backbone_only``: its backbone;
* a detection / segmentation config: its backbone (input the normalised image, outputs the
  stage features);
* a config whose ``model`` is a backbone alone: that backbone.

The graph is made of standard ONNX ops (mmdwnet's operators decomposed, any ONNX runtime), or
with ``custom_ops`` keeps each mmdwnet operator as one onnxruntime custom node that runs
mmdwnet's kernels (:mod:`mmdwnet.deployment.ort_ops`: onnxruntime with onnxruntime-extensions,
Python and mmdwnet at run time).

Needs ``pip install mmdwnet[deploy]`` (onnx, onnxruntime, onnxscript, onnxruntime-extensions).
"""
import contextlib
import io
import os.path as osp
import warnings
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from mmdwnet.deployment import ort_ops
from mmdwnet.utils.fileio import atomic_open, check_output

if TYPE_CHECKING:
    import onnxruntime

EXPORTERS = ('dynamo', 'torchscript')


class OnnxMismatch(RuntimeError):
    """The exported graph differs from PyTorch by more than the tolerance."""


def check_requirements(exporter: str, custom_ops: bool = False) -> None:
    """Raise an ImportError naming the missing package and how to install it (``custom_ops``:
    onnxruntime-extensions too, which runs the custom nodes)."""
    for module in ('onnx', 'onnxruntime') + (('onnxscript', ) if exporter == 'dynamo' else ()):
        try:
            __import__(module)
        except ImportError as e:
            raise ImportError(f'{module} is not installed; run `pip install mmdwnet[deploy]` '
                              '(or `pip install -r requirements/deploy.txt`)') from e
    if custom_ops:
        ort_ops.require_extensions()


class TensorOutputs(nn.Module):
    """``net(x)`` as a flat tuple of tensors (what exporters and onnxruntime exchange)."""

    def __init__(self, net, classifier):
        super().__init__()
        self.net, self.classifier = net, classifier

    def forward(self, x):
        out = self.net(x, mode='tensor') if self.classifier else self.net(x)
        return tuple(out) if isinstance(out, (tuple, list)) else (out, )


def build_network(config: str, checkpoint: Optional[str], backbone_only: bool = False,
                  cfg_options: Optional[dict] = None) -> Tuple[nn.Module, str]:
    """(module to export, what it is) for ``config`` and ``checkpoint`` (None or 'none':
    random weights, with a warning)."""
    from mmdwnet.apis import init_model
    if checkpoint is not None and checkpoint.lower() == 'none':
        checkpoint = None
    if checkpoint is None:
        warnings.warn("checkpoint 'none': exporting randomly initialised weights")
    elif '://' not in checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist (give a file, a URL '
                                "or 'none')")
    model = init_model(config, checkpoint, device='cpu', cfg_options=cfg_options)
    scope = model.cfg.get('default_scope', None)
    if scope == 'mmpretrain' and not backbone_only:
        return TensorOutputs(model, classifier=True).eval(), 'classifier'
    if scope is not None or backbone_only:
        backbone = getattr(model, 'backbone', None)
        if backbone is None:
            raise ValueError(f'{type(model).__name__} of {config} has no backbone to export')
        return TensorOutputs(backbone, classifier=False).eval(), f'backbone of the {scope} model'
    return TensorOutputs(model, classifier=False).eval(), 'backbone'


def export_onnx(net: nn.Module, example: torch.Tensor, exporter: str, dynamic: bool,
                opset: Optional[int] = None, custom_ops: bool = False) -> bytes:
    """Serialized ONNX model of ``net`` traced at ``example`` (N, 3, H, W): standard ops, or
    with ``custom_ops`` mmdwnet's operators as onnxruntime custom nodes
    (:func:`mmdwnet.deployment.ort_ops.export_custom_ops`)."""
    with (ort_ops.export_custom_ops() if custom_ops else contextlib.nullcontext({})) as extra:
        if exporter == 'torchscript':
            return _export_torchscript(net, example, dynamic, opset,
                                       extra.get('custom_opsets', {}))
        dynamic_shapes = ({0: torch.export.Dim('batch', min=1, max=1024)}, ) if dynamic else None
        program = torch.onnx.export(
            net, (example, ), dynamo=True, opset_version=opset, dynamic_shapes=dynamic_shapes,
            external_data=False, verbose=False,
            custom_translation_table=extra.get('custom_translation_table'))
        return program.model_proto.SerializeToString()


def _export_torchscript(net: nn.Module, example: torch.Tensor, dynamic: bool,
                        opset: Optional[int], custom_opsets: Dict[str, int]) -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings():
        # size-dependent paddings traced as constants: expected, the image size is fixed
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(net, (example, ), f, dynamo=False, opset_version=opset or 17,
                          input_names=['input'],
                          dynamic_axes={'input': {0: 'batch'}} if dynamic else None,
                          custom_opsets=custom_opsets)
    return f.getvalue()


def verify(net: nn.Module, model_bytes: bytes, inputs: Sequence[torch.Tensor]) -> List[float]:
    """Max |onnxruntime - PyTorch| over all outputs, per input (a graph with mmdwnet custom
    nodes runs with :func:`mmdwnet.deployment.ort_ops.session_options`)."""
    return compare(net, ort_ops.inference_session(model_bytes), inputs)


def compare(net: nn.Module, sess: 'onnxruntime.InferenceSession',
            inputs: Sequence[torch.Tensor]) -> List[float]:
    """Max |onnxruntime session ``sess`` - PyTorch| over all outputs, per input."""
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


def export_and_verify(config: str, checkpoint: Optional[str], output: str,
                      shape: Sequence[int], *, dynamic: bool = False, exporter: str = 'dynamo',
                      opset: Optional[int] = None, backbone_only: bool = False,
                      tolerance: float = 1e-4, cfg_options: Optional[dict] = None,
                      force: bool = False, custom_ops: bool = False,
                      log: Callable[[str], None] = print) -> List[float]:
    """Export the model of ``config`` to ``output``, checked with onnxruntime; return the
    max abs differences against PyTorch on two random inputs (two batch sizes if ``dynamic``).

    ``custom_ops``: mmdwnet's operators become onnxruntime custom nodes
    (:mod:`mmdwnet.deployment.ort_ops`), checked with onnxruntime-extensions.

    ``output`` is checked before anything is built (:func:`mmdwnet.utils.fileio.check_output`:
    an existing file needs ``force``, its folder must be writable) and written atomically,
    only when the graph is within ``tolerance``.

    Raises:
        OnnxMismatch: the graph differs by more than ``tolerance`` (nothing written).
        FileNotFoundError: ``checkpoint`` does not exist.
        FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError: ``output``
            cannot be written (see ``check_output``).
    """
    check_requirements(exporter, custom_ops)
    inputs = [checkpoint] if checkpoint and osp.isfile(checkpoint) else []
    check_output(output, force=force, inputs=[config] + inputs, label='output')
    net, what = build_network(config, checkpoint, backbone_only, cfg_options)
    h, w = shape
    gen = torch.Generator().manual_seed(0)
    # dynamo specialises a batch of 1, so a dynamic export traces a batch of 2
    example = torch.randn(2 if dynamic else 1, 3, h, w, generator=gen)
    second = torch.randn(3 if dynamic else 1, 3, h, w, generator=gen)
    log(f'exporting the {what} ({exporter} exporter, input {tuple(example.shape)}'
        f'{", dynamic batch" if dynamic else ""}'
        f'{", mmdwnet ops as onnxruntime custom ops" if custom_ops else ""})')
    model_bytes = export_onnx(net, example, exporter, dynamic, opset, custom_ops)
    if custom_ops:
        nodes = ort_ops.custom_nodes(model_bytes)
        log('custom nodes: ' + (', '.join(f'{n} x{c}' for n, c in nodes.items())
                                or f'none ({what} uses no mmdwnet operator)'))

    diffs = verify(net, model_bytes, [example, second])
    worst = max(diffs)
    log(f'onnxruntime vs PyTorch: max abs diff {worst:.3g} '
        f'(inputs of batch {example.shape[0]} and {second.shape[0]}: '
        f'{", ".join(f"{d:.3g}" for d in diffs)}; tolerance {tolerance:g})')
    if not worst <= tolerance:
        raise OnnxMismatch(f'the exported graph differs from PyTorch by {worst:.3g} > '
                           f'{tolerance:g}; {output} was not written')
    try:
        with atomic_open(output, 'wb', replace=force) as f:  # never replaces unless force
            f.write(model_bytes)
    except FileExistsError:
        raise FileExistsError(f'{output} appeared during the export; pass --force to replace '
                              'it') from None
    log(f'wrote {output} ({len(model_bytes) / 2**20:.1f} MiB)')
    return diffs
