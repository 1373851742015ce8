"""Probes: measure the paper's Table 1 properties of a spatial mixer by probing it numerically.

Every mixer of :mod:`mmdwnet.models.mixers` exposes an analysis hook
``aggregation(x) -> (values, aggregate)``: for one input ``x`` (1, H, W, C) it returns the
values (1, C, H, W) that enter the spatial aggregation and the aggregation itself, a function
(N, C, H, W) -> (N, C, H, W) with the connection weights that ``x`` induces held fixed.  With
the weights fixed the aggregation is affine, ``y = A(x) v + b``, and the connection tensor
``A(x)`` of shape (C, H, W, C, H, W) (output channel/position, input channel/position) is its
exact Jacobian.  It is computed in one batched call on the C*H*W unit vectors
(``aggregate(e_q) - aggregate(0)``); the probe first checks that the map really is affine.

From ``A`` (and the mixer) :func:`measure_mixer` derives, never from the class name:

* sparse between channels -- ``A[c, :, :, c', :, :] == 0`` for ``c != c'``;
* sparse between positions -- the connected input positions of every output position: the
  largest bounding box (receptive field) and whether any output sees the whole map;
* sampling -- ``window`` when the connection pattern partitions the map into blocks (every
  position connects to exactly its block), ``sliding`` when every interior position's pattern
  is centred on it;
* weight sharing across positions -- the smallest period ``P`` with
  ``A[:, p + s, :, q + s] == A[:, p, :, q]`` for the shifts ``s = (P, 0), (0, P)`` and all
  positions inside the map: ``P = 1`` is full translation equivariance (convolution), ``P > 1``
  block-wise (shared across windows), none found: not shared;
* weight sharing across channels -- channels whose (HW x HW) matrices ``A[c, :, :, c, :, :]``
  are equal share one weight: ``C / #distinct``;
* dynamic weight -- whether ``A`` changes between two random inputs;
* weights computed from -- the output positions whose weights change when the input of one
  position changes: none (static), only that position (a projection of the centre), its
  neighbourhood / window (pairwise dot products), every position (global pooling);
* the whole mixer (with its 1x1 projections): the autograd Jacobian of its centre output
  w.r.t. its input, cross-channel entries and receptive field;
* cost -- parameters and FLOPs (:func:`mmdwnet.analysis.count_flops`) at a given shape.
"""
import ast
import copy
import json
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from mmdwnet.models.mixers import MIXERS, MixerNotProbeable
from ..complexity import count_flops, count_params

__all__ = [
    'MixerProperties', 'parse_mixer_config', 'registered_mixers', 'default_mixer_configs',
    'build_probe_mixer', 'connection_tensor', 'measure_mixer', 'probe_mixers', 'mixer_name'
]

PAPER_VARIANTS = (
    dict(type='LocalMLP', share_positions=False),
    dict(type='LocalMLP', share_channels=False),
    dict(type='ShiftedWindowAttention', shift=True),
    dict(type='DWConv', share_channels=True),
    dict(type='DWConv', share_channels=True, share_positions=False),
)

# relative tolerances (to the largest |A| entry)
ZERO_TOL = 1e-6
EQUAL_TOL = 1e-5


@dataclass
class MixerProperties:
    """Measured properties of one mixer config (see the module docstring for definitions)."""
    name: str
    config: dict
    probe_shape: tuple  # (C, H, W) of the probe
    sparse_channels: bool
    cross_channel: float  # max |A[c, ., c' != c, .]| / max |A|
    receptive_field: tuple  # (h, w) largest bounding box of the connected inputs
    connections: int  # most input positions one output position connects to
    positions: str  # 'local' | 'full'
    sampling: str  # 'sliding' | 'window' | 'other'
    share_positions: str  # 'full' | 'block' | 'none'
    share_period: int  # smallest equivariant shift (0 when none)
    channels_per_weight: int
    weight_groups: int
    dynamic: bool
    dynamic_change: float  # max |A(x1) - A(x2)| / max |A(x1)|
    weight_source: str  # 'static' | 'position' | 'local' | 'global'
    weight_source_extent: tuple  # (h, w) bounding box of the positions whose weights changed
    mixer_sparse_channels: bool  # whole mixer incl. 1x1 projections
    mixer_receptive_field: tuple
    params: int = None
    flops: int = None
    cost_shape: tuple = None  # (C, H, W)
    notes: list = field(default_factory=list)


# ---------------------------------------------------------------------------- configs
def parse_mixer_config(text: Union[str, dict]) -> dict:
    """Parse a mixer config given on the command line.

    Accepts ``dict(type='DWConv', kernel_size=5)``, a Python dict literal or a JSON object.

    Raises:
        ValueError: the text is none of these or has no ``type``.
    """
    if isinstance(text, dict):
        cfg = dict(text)
    else:
        text = text.strip()
        cfg = None
        try:
            cfg = json.loads(text)
        except ValueError:
            try:
                node = ast.parse(text, mode='eval').body
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == 'dict' and not node.args):
                    cfg = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
                else:
                    cfg = ast.literal_eval(node)
            except (ValueError, SyntaxError, TypeError) as e:
                raise ValueError(
                    f'cannot parse mixer config {text!r} ({e}); write it as '
                    "\"dict(type='DWConv', kernel_size=5)\" or as JSON "
                    '\'{"type": "DWConv", "kernel_size": 5}\'') from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get('type'), (str, type)):
        raise ValueError(f'a mixer config must be a dict with a `type` (a registered name or '
                         f"a class), got {text!r}; e.g. dict(type='DWConv', kernel_size=5)")
    return cfg


def registered_mixers() -> List[str]:
    """Names of the mixers registered in :data:`mmdwnet.models.mixers.MIXERS` (sorted), those
    outside mmdwnet included; one without the ``aggregation`` hook is reported by
    :func:`probe_mixers`, not dropped."""
    return sorted(MIXERS.module_dict)


def default_mixer_configs() -> List[dict]:
    """Every registered mixer with its default arguments, then :data:`PAPER_VARIANTS`."""
    cfgs = [dict(type=name) for name in registered_mixers()]
    return cfgs + [copy.deepcopy(c) for c in PAPER_VARIANTS if c['type'] in MIXERS.module_dict]


def mixer_name(cfg: dict) -> str:
    """``DWConv(kernel_size=3)`` style name of a config."""
    args = ', '.join(f'{k}={v!r}' for k, v in cfg.items() if k != 'type')
    name = cfg['type'] if isinstance(cfg['type'], str) else cfg['type'].__name__
    return f'{name}({args})'


def build_probe_mixer(cfg: dict, channels: int, num_heads: int,
                      size: Tuple[int, int]) -> nn.Module:
    """Build ``cfg`` as a backbone stage would, for (H, W) = ``size`` maps, in eval mode.

    Raises:
        KeyError: unknown type (with close names).
        MixerNotProbeable: the module has no ``aggregation`` hook.
    """
    from mmdwnet.models.mixers import build_mixer
    mixer = build_mixer(cfg, embed_dims=channels, num_heads=num_heads,
                        input_resolution=tuple(size), shift=False, pad_to_window=False, stage=0)
    if not callable(getattr(mixer, 'aggregation', None)):
        raise MixerNotProbeable(
            f'{type(mixer).__name__} has no `aggregation(x)` analysis hook; derive it from '
            'mmdwnet.models.mixers.SpatialMixer and implement the hook to probe this mixer')
    mixer.eval()
    return mixer


# ---------------------------------------------------------------------------- probes
def connection_tensor(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The connection tensor ``A(x)`` (C, H, W, C, H, W) of ``mixer``'s aggregation.

    ``A[c, h, w, c', h', w']`` is d out[c, h, w] / d value[c', h', w'] with the weights that
    ``x`` (1, H, W, C) induces held fixed.

    Raises:
        ValueError: the hook's aggregation is not affine in the values.
    """
    with torch.no_grad():
        values, aggregate = mixer.aggregation(x)
        c, h, w = values.shape[1:]
        n = c * h * w
        basis = torch.eye(n, dtype=values.dtype).view(n, c, h, w)
        offset = aggregate(torch.zeros_like(values))
        cols = aggregate(basis) - offset  # (n_in, C, H, W)
        # affine check: A v + b must reproduce the aggregation of the actual values
        direct = aggregate(values)
        linear = (cols.reshape(n, -1).t() @ values.reshape(-1)).view_as(values) + offset
        scale = direct.abs().max().clamp_min(1e-12)
        if not torch.allclose(direct, linear, rtol=1e-3, atol=1e-4 * scale.item()):
            raise ValueError(f'the aggregation hook of {type(mixer).__name__} is not affine in '
                             'its values once the weights are fixed; `aggregation(x)` must '
                             'return the aggregation with weights detached')
        return cols.view(c, h, w, c, h, w).permute(3, 4, 5, 0, 1, 2).contiguous()


def _bbox(mask2d):
    rows = mask2d.any(1).nonzero().flatten()
    cols = mask2d.any(0).nonzero().flatten()
    if rows.numel() == 0:
        return 0, 0, None
    box = (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    centre = ((rows[0] + rows[-1]).item() / 2, (cols[0] + cols[-1]).item() / 2)
    return box[0], box[1], centre


def _spatial_pattern(conn):
    """(H, W, H, W) bool spatial pattern -> receptive field, connections, positions, sampling."""
    h, w = conn.shape[:2]
    rf, most, centred = (0, 0), 0, True
    for i in range(h):
        for j in range(w):
            bh, bw, centre = _bbox(conn[i, j])
            rf = (max(rf[0], bh), max(rf[1], bw))
            most = max(most, int(conn[i, j].sum()))
    # centred check on interior positions, with the final receptive field
    ri, rj = rf[0] // 2, rf[1] // 2
    interior = [(i, j) for i in range(ri, h - ri) for j in range(rj, w - rj)]
    for i, j in interior:
        _, _, centre = _bbox(conn[i, j])
        if centre is None or centre != (float(i), float(j)):
            centred = False
            break
    flat = conn.reshape(h * w, h * w)
    partition = bool(flat.diagonal().all() and torch.equal(flat, flat.t())
                     and torch.equal((flat.float() @ flat.float()) > 0, flat))
    if partition and most > 1:
        sampling = 'window'
    elif centred and interior:
        sampling = 'sliding'
    else:
        sampling = 'other'
    positions = 'full' if most == h * w else 'local'
    return rf, most, positions, sampling


def _share_period(a, scale):
    """Smallest P with A equivariant to shifts (P, 0) and (0, P); 0 when none."""
    _, h, w = a.shape[:3]
    atol = EQUAL_TOL * scale
    for p in range(1, min(h, w) // 2 + 1):
        ok = True
        for sub in ((a[:, p:, :, :, p:, :], a[:, :-p, :, :, :-p, :]),
                    (a[:, :, p:, :, :, p:], a[:, :, :-p, :, :, :-p])):
            shifted, base = sub
            if base.abs().max() <= atol or not torch.allclose(shifted, base, rtol=0, atol=atol):
                ok = False
                break
        if ok:
            return p
    return 0


def _channel_groups(a, scale):
    """Number of distinct per-channel spatial matrices, and the smallest group size."""
    c = a.shape[0]
    mats = [a[i, :, :, i].reshape(-1) for i in range(c)]
    groups = []
    for i, m in enumerate(mats):
        for g in groups:
            if torch.allclose(mats[g[0]], m, rtol=0, atol=EQUAL_TOL * scale):
                g.append(i)
                break
        else:
            groups.append([i])
    return len(groups), min(len(g) for g in groups)


def _mixer_jacobian(mixer, x):
    """Whole-mixer Jacobian of the centre output (C_out, H, W, C_in) by autograd."""
    _, h, w, c = x.shape

    def centre(inp):
        return mixer(inp)[0, h // 2, w // 2]

    jac = torch.autograd.functional.jacobian(centre, x)  # (C, 1, H, W, C)
    return jac[:, 0]


def measure_mixer(cfg: Union[str, dict], channels: int = 8, num_heads: int = 2,
                  size: Tuple[int, int] = (14, 14),
                  cost_shape: Optional[Tuple[int, int, int]] = (96, 56, 56),
                  cost_heads: int = 3, seed: int = 0) -> 'MixerProperties':
    """Probe one mixer config; returns :class:`MixerProperties`.

    Args:
        cfg (dict | str): mixer config (see :func:`parse_mixer_config`).
        channels, num_heads, size: probe shape (C, heads, (H, W)); small keeps it fast.
        cost_shape (tuple | None): (C, H, W) at which parameters and FLOPs are counted
            (None skips it); ``cost_heads`` heads there.
        seed (int): seed of the random weights and inputs.
    """
    cfg = parse_mixer_config(cfg)
    size = tuple(size)
    if channels % num_heads:
        raise ValueError(f'probe channels {channels} must be divisible by num_heads {num_heads}')
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mixer = build_probe_mixer(cfg, channels, num_heads, size)
    x1 = torch.randn(1, *size, channels, generator=gen)
    x2 = torch.randn(1, *size, channels, generator=gen)
    a1 = connection_tensor(mixer, x1)
    scale = a1.abs().max().item()
    if scale == 0:
        raise ValueError(f'{mixer_name(cfg)}: the aggregation is identically zero for the probe '
                         'input; nothing to measure')
    zero = ZERO_TOL * scale
    c, h, w = channels, *size
    eye = torch.eye(c, dtype=torch.bool).view(c, 1, 1, c, 1, 1).expand_as(a1)
    cross = a1.masked_fill(eye, 0).abs().max().item() / scale
    conn = (a1.abs() > zero).any(3).any(0)  # (H, W, H, W) over all channel pairs
    rf, most, positions, sampling = _spatial_pattern(conn)
    period = _share_period(a1, scale)
    share = 'none' if period == 0 else ('full' if period == 1 else 'block')
    groups, per_weight = _channel_groups(a1, scale)

    a2 = connection_tensor(mixer, x2)
    change = (a1 - a2).abs().max().item() / scale
    dynamic = change > EQUAL_TOL
    # which output positions' weights depend on the input at the centre position
    x3 = x1.clone()
    x3[0, h // 2, w // 2] += 3 * torch.randn(channels, generator=gen)
    a3 = connection_tensor(mixer, x3)
    rows = ((a1 - a3).abs() > EQUAL_TOL * scale).any(5).any(4).any(3).any(0)  # (H, W)
    n_rows = int(rows.sum())
    ext = _bbox(rows)[:2]
    if not dynamic or n_rows == 0:
        source = 'static'
    elif n_rows == 1:
        source = 'position'
    elif n_rows == h * w:
        source = 'global'
    else:
        source = 'local'

    xg = x1.clone().requires_grad_(True)
    jac = _mixer_jacobian(mixer, xg).detach()  # (C_out, H, W, C_in)
    jzero = ZERO_TOL * jac.abs().max().item()
    mixer_cross = jac.masked_fill(torch.eye(c, dtype=torch.bool).view(c, 1, 1, c), 0)
    mixer_sparse = bool(mixer_cross.abs().max() <= jzero)
    mixer_rf = _bbox((jac.abs() > jzero).any(3).any(0))[:2]

    props = MixerProperties(
        name=mixer_name(cfg), config=cfg, probe_shape=(c, h, w), sparse_channels=cross <= ZERO_TOL,
        cross_channel=cross, receptive_field=rf, connections=most, positions=positions,
        sampling=sampling, share_positions=share, share_period=period,
        channels_per_weight=per_weight, weight_groups=groups, dynamic=dynamic,
        dynamic_change=change, weight_source=source, weight_source_extent=ext,
        mixer_sparse_channels=mixer_sparse, mixer_receptive_field=mixer_rf)
    if cost_shape is not None:
        cc, ch, cw = cost_shape
        if cc % cost_heads:
            raise ValueError(f'cost channels {cc} must be divisible by cost heads {cost_heads}')
        torch.manual_seed(seed)
        big = build_probe_mixer(cfg, cc, cost_heads, (ch, cw))
        props.params = count_params(big)
        props.flops = int(count_flops(big, (ch, cw, cc)))
        props.cost_shape = tuple(cost_shape)
    return props


def probe_mixers(cfgs: Optional[Sequence[Union[str, dict]]] = None, progress: bool = False,
                 not_probed: Optional[List[Tuple[str, str]]] = None,
                 **kwargs: Any) -> List['MixerProperties']:
    """:func:`measure_mixer` for every config (default: :func:`default_mixer_configs`).

    Args:
        not_probed (list | None): where mixers without the analysis hook are reported as
            ``(name, reason)`` pairs and skipped; None raises :class:`MixerNotProbeable`.
    """
    cfgs = default_mixer_configs() if cfgs is None else [parse_mixer_config(c) for c in cfgs]
    results = []
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(cfgs), file=sys.stdout)
    for cfg in cfgs:
        try:
            results.append(measure_mixer(cfg, **kwargs))
        except MixerNotProbeable as e:
            if not_probed is None:
                raise
            not_probed.append((mixer_name(cfg), str(e)))
        if bar is not None:
            bar.update()
    if bar is not None:
        print()
    return results
