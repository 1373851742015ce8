"""Inference fast path of the dense (pointwise) layers on CPU.

Every backbone of this package spends most of its CPU inference time in the FFN of its blocks
(``x + fc2(act(fc1(norm(x)))``, 8 C^2 multiply-adds per position against 2-3 C^2 for the mixer
projections).  Run as plain ``nn.Linear`` / ``nn.GELU`` modules on a CPU, that FFN pays for:

* PyTorch's float32 ``addmm`` (MKL sgemm), which on some CPUs runs well below the speed of the
  oneDNN kernels that PyTorch already uses for convolutions (measured on the benchmark machine,
  an AMD EPYC with AVX-512: 2-2.5x slower for these shapes, docs/benchmark.md);
* a fresh (B*H*W, 4C) hidden tensor for the ``fc1`` output and another for the activation: at
  stage 1 of a tiny model at batch 8 each is 38 MiB, above glibc's mmap threshold, so every
  allocation is new memory whose page faults cost as much as the matrix product;
* separate passes for the bias, the activation, the pre-FFN norm and the residual add.

Two layer types carry it, with the parameters and state-dict keys of the layers they replace:

* :class:`Linear` (an ``nn.Linear``): one oneDNN matrix product.  Mixers use plain
  ``nn.Linear``; :class:`~mmdwnet.models.backbones.MixerBlock` turns every plain ``nn.Linear`` of
  its mixer into this class when it is built (:func:`use_fast_linears`, the way torch's fusion
  utilities swap modules), so the fast path reaches every mixer, also one defined outside
  mmdwnet, without the mixer importing anything;
* :class:`FFN` (mmcv's two-layer ``FFN``): :meth:`FFN.fused_residual` computes the block's
  ``x + ffn(norm(x))`` with oneDNN matrix products that fuse bias and activation
  (``torch.ops.mkldnn._linear_pointwise``, the op ``torch.compile`` itself emits for CPU
  linears), over chunks of rows so that the hidden tensor stays in cache, with an eval-mode
  BatchNorm folded into ``fc1`` once (the fold is kept until the model trains again or a folded
  tensor changes, or made ahead of time by :func:`prepare_for_inference`).

Outputs agree with the module path within float32 rounding (tests/models/test_dense_fast_path.py).

It runs only where nothing can tell the difference: no autograd graph is being recorded
(``torch.no_grad`` / inference mode), the layer is in eval mode, CPU float32 tensors, not while
TorchScript traces (FLOP counting) or ``torch.compile`` compiles, and only if oneDNN is present
and passes a one-time check.  ``MMDWNET_FAST_INFERENCE=0`` or
:func:`mmdwnet.models.layers.switches.fast_inference` (``with fast_inference(False): ...``,
re-exported here) switches it off (the benchmark's "plain modules" rows).
"""
import warnings
from typing import Any, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import FFN as _MMCVFFN
from torch.nn.modules.batchnorm import _BatchNorm

from .switches import fast_inference, fast_inference_enabled

__all__ = ['FFN', 'Linear', 'fast_inference', 'fast_inference_enabled', 'prepare_for_inference',
           'use_fast_path', 'use_fast_linears']

# Rows per chunk are chosen so that one chunk of the hidden tensor is about this many bytes
# (fits the L2/L3 caches; measured flat between 1 and 8 MiB on the benchmark machine).
HIDDEN_CHUNK_BYTES = 4 << 20

_probe = {}


def _onednn_linear_ok() -> bool:
    """One-time check that ``torch.ops.mkldnn._linear_pointwise`` exists and agrees with
    ``F.linear`` + GELU; a failure warns once and keeps the module path."""
    if 'ok' not in _probe:
        ok = False
        try:
            if torch.backends.mkldnn.is_available():
                gen = torch.Generator().manual_seed(0)
                x = torch.randn(37, 24, generator=gen)
                w, b = torch.randn(40, 24, generator=gen), torch.randn(40, generator=gen)
                with torch.no_grad():
                    got = torch.ops.mkldnn._linear_pointwise(x, w, b, 'gelu', [], 'none')
                    ok = bool((got - F.gelu(F.linear(x, w, b))).abs().max() < 1e-4)
        except (RuntimeError, AttributeError) as e:
            warnings.warn(f'mmdwnet: oneDNN linear unavailable ({e}); the CPU inference fast '
                          'path is off')
        _probe['ok'] = ok
    return _probe['ok']


def _compiling():
    is_compiling = getattr(getattr(torch, 'compiler', None), 'is_compiling', None)
    return bool(is_compiling and is_compiling())


def use_fast_path(module: nn.Module, x: torch.Tensor) -> bool:
    """True when ``module`` may run the fast path on ``x`` (see the module docstring).

    Off under ``torch.compile``, which makes its own fused CPU kernels (and cannot lower
    ``_linear_pointwise`` on weights that are not graph constants)."""
    return (not module.training and not torch.is_grad_enabled() and x.device.type == 'cpu'
            and x.dtype == torch.float32 and not torch.jit.is_tracing()
            and not torch.jit.is_scripting() and not _compiling() and fast_inference_enabled()
            and _onednn_linear_ok())


def _activation(act):
    """(attr, algorithm) of oneDNN's fused post-op for ``act``, or None if it has none."""
    if isinstance(act, nn.GELU):
        return 'gelu', act.approximate
    if isinstance(act, nn.ReLU):
        return 'relu', ''
    return None


def _fold_batch_norm(norm, fc1):
    """Eval BatchNorm followed by ``fc1``: the (weight, bias) of one equivalent linear."""
    scale = norm.running_var.add(norm.eps).rsqrt()
    shift = -norm.running_mean * scale
    if norm.affine:
        scale = scale * norm.weight
        shift = shift * norm.weight + norm.bias
    bias = fc1.weight @ shift
    if fc1.bias is not None:
        bias = bias + fc1.bias
    return fc1.weight * scale, bias


def _versions(tensors):
    """Identity, storage and in-place version of each tensor (None if one has no version
    counter)."""
    try:
        return tuple((id(t), t.data_ptr(), t._version) for t in tensors if t is not None)
    except RuntimeError:  # inference tensors (a model built under torch.inference_mode)
        return None


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) that runs one oneDNN matrix product
    in CPU inference (see the module docstring); elsewhere exactly ``nn.Linear``.

    Shape:
        (..., in_features) -> (..., out_features).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features)."""
        if use_fast_path(self, x):
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, 'none', [], '')
        return super().forward(x)


def use_fast_linears(module: nn.Module) -> nn.Module:
    """Give every plain ``nn.Linear`` in ``module`` the fast path, in place; returns ``module``.

    Each module whose type is exactly ``nn.Linear`` becomes a :class:`Linear` (its class is
    swapped: same object, parameters, hooks and state-dict keys, and still an ``nn.Linear``), so
    the layer runs one oneDNN matrix product in CPU inference and is ``nn.Linear`` everywhere
    else.  Subclasses of ``nn.Linear`` (e.g. quantized or LoRA layers) are left alone.
    """
    for m in module.modules():
        if type(m) is nn.Linear:
            m.__class__ = Linear
    return module


class FFN(_MMCVFFN):
    """mmcv's two-layer ``FFN`` (same parameters and state-dict keys) with a fused CPU
    inference form of the block's ``x + ffn(norm(x))``: :meth:`fused_residual`.

    This class is the one place that knows mmcv's layout: ``fc1`` is ``layers.0.0``, the
    activation ``layers.0.1``, ``fc2`` is ``layers.1`` (:attr:`FC1_KEY`, :attr:`FC2_KEY`; the
    checkpoint converter maps the official ``mlp.fc1`` / ``mlp.fc2`` onto them).

    Args:
        embed_dims (int): C.
        feedforward_channels (int): hidden width.
        act_cfg (dict): activation. Default: GELU.
        ffn_drop (float): dropout after the activation and after ``fc2``. Default: 0.
        **kwargs: other mmcv ``FFN`` options (e.g. ``layer_scale_init_value``; with a layer
            scale the fused form steps aside).

    Shape:
        (..., C) -> (..., C).
    """

    FC1_KEY = 'layers.0.0'
    ACT_KEY = 'layers.0.1'
    FC2_KEY = 'layers.1'

    def __init__(self, embed_dims: int, feedforward_channels: int,
                 act_cfg: dict = dict(type='GELU'), ffn_drop: float = 0., **kwargs: Any) -> None:
        super().__init__(embed_dims=embed_dims, feedforward_channels=feedforward_channels,
                         num_fcs=2, ffn_drop=ffn_drop, dropout_layer=None, act_cfg=act_cfg,
                         add_identity=False, **kwargs)
        self._fold = None  # (key, fc1 weight, fc1 bias) with a BatchNorm folded in

    @property
    def fc1(self) -> nn.Linear:
        """The first linear layer (C -> hidden)."""
        return self.get_submodule(self.FC1_KEY)

    @property
    def act(self) -> nn.Module:
        """The activation."""
        return self.get_submodule(self.ACT_KEY)

    @property
    def fc2(self) -> nn.Linear:
        """The second linear layer (hidden -> C)."""
        return self.get_submodule(self.FC2_KEY)

    def train(self, mode: bool = True) -> 'FFN':
        """Set the mode; training drops the folded ``fc1`` (made again at the next inference)."""
        if mode:
            self._fold = None  # folded again at the next inference
        return super().train(mode)

    def folded_fc1(self, norm: Optional[nn.Module]
                   ) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """(weight, bias) of ``fc1`` with the eval BatchNorm ``norm`` before it folded in.

        Computed once and kept until the model trains again or one of the tensors it was made
        from changes (their in-place version counters); None when ``norm`` cannot be folded.
        """
        fc1 = self.fc1
        if not isinstance(norm, _BatchNorm):
            return fc1.weight, fc1.bias
        if norm.running_mean is None:  # batch statistics even in eval mode
            return None
        key = _versions((norm.running_mean, norm.running_var, norm.weight, norm.bias,
                         fc1.weight, fc1.bias))
        if key is None or self._fold is None or self._fold[0] != key:
            self._fold = (key, *_fold_batch_norm(norm, fc1))
        return self._fold[1:]

    def fused_residual(self, x: torch.Tensor,
                       norm: Optional[nn.Module] = None) -> Optional[torch.Tensor]:
        """``x + self(norm(x))`` for channels-last ``x`` in CPU inference, else None.

        Args:
            x (Tensor): (..., C).
            norm (nn.Module | None): the norm before the FFN: an eval BatchNorm (folded into
                ``fc1``), a LayerNorm (applied chunk by chunk) or None.

        Returns:
            Tensor | None: (..., C); None where the fast path does not run or this FFN/norm
            has no fused form (then the caller runs the modules).
        """
        if (not use_fast_path(self, x) or not isinstance(self.gamma2, nn.Identity)
                or not (norm is None or isinstance(norm, (_BatchNorm, nn.LayerNorm)))
                or (norm is not None and norm.training)):
            return None
        folded = self.folded_fc1(norm)
        if folded is None:
            return None
        w1, b1 = folded
        layer_norm = norm if isinstance(norm, nn.LayerNorm) else None
        act, fc2 = self.act, self.fc2
        post = _activation(act)
        onednn_linear = torch.ops.mkldnn._linear_pointwise  # bias may be None

        c = x.shape[-1]
        rows = x.reshape(-1, c)
        out = torch.empty_like(rows)
        step = max(64, HIDDEN_CHUNK_BYTES // (w1.shape[0] * x.element_size()))
        for a in range(0, rows.shape[0], step):
            xr = rows[a:a + step]
            h = xr if layer_norm is None else F.layer_norm(
                xr, layer_norm.normalized_shape, layer_norm.weight, layer_norm.bias,
                layer_norm.eps)
            if post is not None:
                h = onednn_linear(h, w1, b1, post[0], [], post[1])
            else:
                h = act(onednn_linear(h, w1, b1, 'none', [], ''))
            torch.add(xr, onednn_linear(h, fc2.weight, fc2.bias, 'none', [], ''),
                      out=out[a:a + step])
        return out.view(x.shape)


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode and make the inference-only forms of its layers now (the
    pre-FFN BatchNorm folds, otherwise made at the first inference); returns ``model``.

    Every submodule with a ``prepare_for_inference()`` method (e.g.
    :class:`mmdwnet.models.MixerBlock`) is asked to prepare.  Outputs are unchanged.
    """
    model.eval()
    with torch.no_grad():
        for m in model.modules():
            prepare = getattr(m, 'prepare_for_inference', None)
            if callable(prepare):
                prepare()
    return model
