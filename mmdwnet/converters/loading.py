"""Convert on load: official checkpoints load wherever an mmdwnet backbone loads weights.

Accepted, local path or URL: the official classification files ``{'model': state_dict}``
(DemystifyLocalViT DWNet / D-DWNet / I-D-DWNet, Swin), the official mmdet 2.x / mmseg 0.x files
(whole detector / segmentor or backbone alone, ``backbone.`` keys), and mmdwnet's own.  The key
conversion is :mod:`mmdwnet.converters.official`; this module holds the state-dict functions
that decide where it applies and check the result:

* :func:`prepare_backbone_state` -- called by ``LocalMixerNet._load_from_state_dict`` (as
  mmpretrain's Swin and timm's ``checkpoint_filter_fn`` do): any ``load_state_dict`` on a model
  that contains the backbone (``load_from``, ``--resume``, ``tools/test.py``,
  ``mmengine.runner.load_checkpoint`` and so ``mmpretrain.get_model``, ``mmdet`` ``init_detector``,
  ``mmseg`` ``init_model``) converts official keys under the backbone's prefix, migrates keys of
  older mmdwnet versions (:data:`MIGRATIONS`, by the backbone's ``_version``), checks the
  architecture and raises :class:`CheckpointMismatch` when backbone weights stay unloaded or
  values do not fit;
* :func:`relocate_official_classifier` -- applied by the loading gate
  (:func:`mmdwnet.utils.safe_loading`, which every mmdwnet tool and API and the
  ``SafeLoadingHook`` use): an official classification file, whose keys have no ``backbone.``
  prefix, is returned as ``{'state_dict': {backbone.*, head.fc.*}}``, so that
  ``mmengine.runner.load_checkpoint`` and ``mmpretrain.get_model`` *inside the gate* load it into
  a classifier (the backbone converts its keys). Outside the gate nothing converts it: the
  backbone then raises a :class:`CheckpointMismatch` that says so;
* :func:`parent_pre_hook` -- a load_state_dict pre-hook given, per instance, by
  :func:`attach_checkpoint_hooks` to the model holding the backbone as ``backbone``
  (``init_model``, the runner of ``tools/``, ``SafeLoadingHook``): a 22K head meeting a
  1000-class model is mapped (:mod:`mmdwnet.converters.imagenet22k`); any other class-count
  mismatch re-initialises the head with a warning; in :func:`strict_loading` the whole model
  must match. No process-wide hook is registered (not on import, not when a backbone is built);
* :func:`load_pretrained` -- ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` of
  the backbone (as mmdet's Swin ``init_weights`` reads official Swin files), with or without
  ``prefix``, read through the loading gate.

One log line says what was converted.  The only tolerated gaps (:data:`ALLOWED_MISMATCHES`) are
listed there; inside :func:`strict_loading` (``init_model``, ``tools/test.py``) none is.
"""
import contextlib
import contextvars
import logging
import re
from typing import (TYPE_CHECKING, Any, Container, Dict, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, Union)

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from .imagenet22k import is_22k_to_1k, map_22k_to_1k
from .official import (UnrecognisedCheckpoint, convert_backbone_keys, preset_file_names,
                       convert_official, infer_backbone)

if TYPE_CHECKING:  # the backbone module imports this one
    from mmdwnet.models.backbones.local_mixer_net import LocalMixerNet

__all__ = ['CheckpointMismatch', 'ALLOWED_MISMATCHES', 'strict_loading', 'prepare_backbone_state',
           'MIGRATIONS', 'migrate_keys', 'parent_pre_hook', 'load_pretrained',
           'describe_mismatch', 'attach_checkpoint_hooks', 'relocate_official_classifier',
           'NonFiniteWeights', 'check_finite_weights', 'first_non_finite']

#: The expected, documented gaps between a checkpoint and a model; every other gap raises.
ALLOWED_MISMATCHES = {
    'classifier final norm -> downstream output norms':
        "a classification checkpoint has one LayerNorm after the last stage ('norm' officially, "
        "'norm3' in mmdwnet); a detection/segmentation backbone has BatchNorm output norms "
        '(DW-conv family) or more outputs: as in the official downstream code, those norm{i} '
        'start from their initialisation (the LN entries are not copied into BN layers).',
    'classification head with another class count':
        'fine-tuning on another label set: the head starts from its initialisation (warning '
        'naming both sizes); a 21841/21842-class ImageNet-22K head meeting a 1000-class model '
        'is mapped with map22kto1k.txt instead (official Swin fine-tuning).',
    'classification head of a classification checkpoint loaded into a backbone alone':
        'dropped (init_cfg of a backbone, or a detector / segmentor).',
}

_STRICT = contextvars.ContextVar('mmdwnet_strict_loading', default=False)

#: ``{old version: function(state, prefix) -> None}``: the key migration from mmdwnet backbone
#: state dicts of ``_version == old`` to ``old + 1``, applied in place, in order, up to the
#: backbone's ``_version``. ``_version`` 1 is the first layout (every mmdwnet checkpoint so far);
#: a change of keys bumps ``LocalMixerNet._version`` and adds its migration here.
MIGRATIONS = {}


class CheckpointMismatch(RuntimeError):
    """A checkpoint's keys or shapes do not match the model being built."""


@contextlib.contextmanager
def strict_loading() -> Iterator[None]:
    """Inside, a model with an mmdwnet backbone loads only a checkpoint that fits it entirely.

    No :data:`ALLOWED_MISMATCHES` gap is tolerated, nor a missing or unexpected key anywhere in
    the model (heads and necks included): used where a model is evaluated or run right away.
    """
    token = _STRICT.set(True)
    try:
        yield
    finally:
        _STRICT.reset(token)


def _log(msg, level=logging.INFO):
    print_log(f'mmdwnet: {msg}', logger='current', level=level)


def _sub(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _replace(state, prefix, new):
    for key in [k for k in state if k.startswith(prefix)]:
        del state[key]
    for key, value in new.items():
        state[prefix + key] = value


def _is_official(sub):
    return 'patch_embed.proj.weight' in sub or any(k.startswith('layers.') for k in sub)


def _short_arch(arch):
    return f"embed_dims={arch['embed_dims']}, depths={list(arch['depths'])}"


def _dtype_kind(dtype):
    if dtype.is_complex:
        return 'complex'
    if dtype.is_floating_point:
        return 'floating-point'
    return 'bool' if dtype == torch.bool else 'integer'


def describe_mismatch(model_state: Mapping[str, Tensor], ckpt_state: Mapping[str, Any],
                      show: int = 5, allowed_missing: Container[str] = ()) -> str:
    """A short description of what keeps ``ckpt_state`` from filling ``model_state``, or ''.

    Reported: missing and unexpected keys, values that are not tensors, shapes that differ and
    dtypes of another kind (a floating-point model tensor needs a floating-point value, an
    integer buffer an integer one; fp16/bf16 weights into an fp32 model are fine). BN
    ``num_batches_tracked`` counters and ``allowed_missing`` keys may be absent.
    """
    missing = [k for k in model_state if k not in ckpt_state and k not in allowed_missing
               and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in ckpt_state if k not in model_state]
    common = [k for k in model_state if k in ckpt_state]
    not_tensors = [f'{k} ({type(ckpt_state[k]).__name__})' for k in common
                   if not isinstance(ckpt_state[k], torch.Tensor)]
    tensors = [k for k in common if isinstance(ckpt_state[k], torch.Tensor)]
    shapes = [f'{k}: checkpoint {tuple(ckpt_state[k].shape)} vs model {tuple(model_state[k].shape)}'
              for k in tensors if tuple(ckpt_state[k].shape) != tuple(model_state[k].shape)]
    dtypes = [f'{k}: checkpoint {ckpt_state[k].dtype} vs model {model_state[k].dtype}'
              for k in tensors
              if _dtype_kind(ckpt_state[k].dtype) != _dtype_kind(model_state[k].dtype)]
    parts = []
    for what, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                       ('values that are not tensors', not_tensors),
                       ('shape mismatches', shapes), ('dtype mismatches', dtypes)):
        if keys:
            more = f' ... (+{len(keys) - show} more)' if len(keys) > show else ''
            parts.append(f'{len(keys)} {what}: ' + ', '.join(keys[:show]) + more)
    return '; '.join(parts)


class NonFiniteWeights(ValueError):
    """A model about to be evaluated holds NaN or infinite weights."""


def first_non_finite(model: nn.Module) -> Optional[Tuple[str, int]]:
    """``(name, count)`` of the first floating-point parameter or buffer of ``model`` holding
    NaN or inf, or None when all are finite."""
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_floating_point() or tensor.is_complex():
            bad = (~torch.isfinite(tensor.detach())).sum().item()
            if bad:
                return name, bad
    return None


def check_finite_weights(model: nn.Module, source: str = 'the checkpoint') -> None:
    """Raise :class:`NonFiniteWeights` naming the first parameter holding NaN/inf: such a model
    must not be evaluated (its scores would be meaningless, e.g. top-1 0.0 with exit code 0)."""
    found = first_non_finite(model)
    if found is not None:
        name, count = found
        raise NonFiniteWeights(
            f'{source}: parameter {name!r} holds {count} NaN/inf value(s); refusing to evaluate '
            'a model with non-finite weights (a diverged training run or a damaged file). Use a '
            'checkpoint from before the divergence.')


def check_architecture(info, backbone):
    """Raise :class:`CheckpointMismatch` when an official checkpoint's inferred backbone
    (``info`` of :func:`~mmdwnet.converters.official.infer_backbone`) is not ``backbone``'s."""
    name = type(backbone).__name__
    want = backbone.arch_settings
    other_family = name in preset_file_names() and info['type'] != name
    other_size = (info['arch']['embed_dims'] != want['embed_dims']
                  or list(info['arch']['depths']) != list(want['depths']))
    if other_family or other_size:
        raise CheckpointMismatch(
            f"the checkpoint holds an official {info['type']} ({_short_arch(info['arch'])}) but "
            f'the model being built has a {name} backbone ({_short_arch(want)}): a checkpoint '
            'of another architecture. Use the config of the checkpoint\'s model (the converter '
            'writes one: tools/model_converters/official2mmdwnet.py SRC DST --config-out CFG).')


def convert_official_backbone(sub, backbone=None):
    """Official backbone keys (no prefix) -> ``(mmdwnet keys, info, dropped head keys)``.

    ``head.*`` (a classification checkpoint's head) is left out; with ``backbone`` the inferred
    architecture is checked against it.
    """
    head = sorted(k for k in sub if k.startswith('head.'))
    body = {k: v for k, v in sub.items() if not k.startswith('head.')}
    info = infer_backbone(body)
    if backbone is not None:
        check_architecture(info, backbone)
    converted = convert_backbone_keys(body, len(info['arch']['depths']),
                                      classification='norm.weight' in body)
    return converted, info, head


def _convert_under(state, prefix, backbone):
    """Convert official keys under ``prefix`` in place (idempotent); log what was converted.

    Returns:
        str | None: why official-looking keys could not be converted (they are left as they
        are, for :func:`check_backbone_state` to report).
    """
    sub = _sub(state, prefix)
    if not _is_official(sub):
        return None
    try:
        converted, info, head = convert_official_backbone(sub, backbone)
    except UnrecognisedCheckpoint as e:
        return str(e)
    _replace(state, prefix, converted)
    dropped = f', classification head ({", ".join(head)}) dropped' if head else ''
    _log(f"converted an official {info['type']} backbone ({_short_arch(info['arch'])}): "
         f'{len(converted)} tensors loaded under {prefix or "the backbone"!r}{dropped}')


def _allowed_missing(backbone, sub, out_norm_cf):
    """Output-norm keys a classifier checkpoint may leave unloaded (see ALLOWED_MISMATCHES)."""
    last = backbone.num_stages - 1
    classifier_outputs = tuple(backbone.out_indices) == (last, ) and not out_norm_cf
    ckpt_norms = {k.split('.')[0] for k in sub if re.match(r'^norm\d+\.', k)}
    from_classifier = ckpt_norms <= {f'norm{last}'} and not any(
        k.startswith(f'norm{last}.running_') for k in sub)
    if classifier_outputs or not from_classifier or _STRICT.get():
        return set()
    return {k for k in backbone.state_dict() if re.match(r'^norm\d+\.', k)}


def _no_weights_hint(prefix, unexpected_keys):
    """What the parent's unexpected keys tell about a load that reached the backbone empty."""
    parent = prefix[:prefix.rstrip('.').rfind('.') + 1] if '.' in prefix.rstrip('.') else ''
    keys = [k[len(parent):] for k in unexpected_keys if k.startswith(parent)]
    tops = sorted({k.split('.')[0] for k in keys})
    if not tops:
        return ''
    hint = f' (the checkpoint\'s top-level names: {tops[:10]})'
    if any(k == 'model' or k.startswith(('patch_embed.', 'layers.')) for k in keys):
        hint += ('. An official classification file loads into a classifier through '
                 'mmdwnet.apis.init_model, tools/, or inside mmdwnet.utils.safe_loading() '
                 '(there mmengine.runner.load_checkpoint and mmpretrain.get_model read it too); '
                 'or convert it once with tools/model_converters/official2mmdwnet.py')
    return hint


def check_backbone_state(backbone, state, prefix, unconverted=None, out_norm_cf=False,
                         unexpected_keys=()):
    """Raise :class:`CheckpointMismatch` unless ``state`` fills every backbone tensor.

    ``unconverted``: why official-looking keys could not be converted, if they could not;
    ``out_norm_cf``: whether the backbone's output norms are channels-first (BatchNorm).
    """
    sub = _sub(state, prefix)
    name = type(backbone).__name__
    if not sub:
        raise CheckpointMismatch(
            f'the checkpoint has no weights for the {name} backbone (no key starts with '
            f'{prefix!r}): a wrong prefix, or not a checkpoint of this model'
            f'{_no_weights_hint(prefix, unexpected_keys)}.')
    expected = backbone.state_dict()
    allowed = _allowed_missing(backbone, sub, out_norm_cf)
    problem = describe_mismatch(expected, sub, allowed_missing=allowed)
    if problem:
        unexpected = [k for k in sub if k not in expected]
        if unconverted:
            cause = (f'keys in the official layout that cannot be converted ({unconverted}): '
                     'a damaged or unknown checkpoint; tools/model_converters/official2mmdwnet.py '
                     'validates an official file and lists what is wrong')
        elif ('not tensors' in problem or 'dtype mismatches' in problem) and \
                'missing' not in problem:
            cause = ('a damaged or tampered checkpoint: its values are not tensors of the kind '
                     'the model holds')
        elif unexpected and len(unexpected) >= len(sub) // 2:
            cause = ('a checkpoint of another model or layout (its keys are not this '
                     "backbone's), or a wrong prefix")
        elif 'shape mismatches' in problem and 'missing' not in problem:
            cause = ('another size, kernel or window of the same family (for a larger kernel or '
                     'window resize the checkpoint with tools/analysis_tools/resize_kernels.py)')
        else:
            cause = 'a checkpoint of another architecture (other depths, mixer or norms)'
        raise CheckpointMismatch(
            f"the checkpoint does not fit the {name} backbone ({_short_arch(backbone.arch_settings)}"
            f") under {prefix!r}: {problem}. Likely cause: {cause}.")
    skipped = sorted({k.split('.')[0] for k in allowed if k not in sub})
    if skipped:
        _log(f'output norms {skipped} of the {name} backbone start from their initialisation '
             '(a classification checkpoint; expected, see ALLOWED_MISMATCHES)')


def _unwrap_for_backbone(state):
    """A backbone loaded on its own accepts whole-model layouts, as mmdet's Swin does."""
    nested = state.get('model')
    if isinstance(nested, dict) and len(state) == 1:
        state.clear()
        state.update(nested)
    if any(k.startswith('backbone.') for k in state) and 'patch_embed.proj.weight' not in state:
        kept = _sub(state, 'backbone.')
        state.clear()
        state.update(kept)


def migrate_keys(state: Dict[str, Any], prefix: str, version: Optional[int],
                 current: int) -> None:
    """Apply :data:`MIGRATIONS` to the keys under ``prefix``, from ``version`` (None: no
    version recorded, i.e. 1) up to ``current``, in place."""
    version = 1 if version is None else version
    if version > current:
        raise CheckpointMismatch(
            f'the checkpoint was saved by a newer mmdwnet (backbone state version {version}, '
            f'this one reads up to {current}); upgrade mmdwnet')
    for old in range(version, current):
        MIGRATIONS[old](state, prefix)


def drop_classifier_norms(state, prefix, out_indices):
    """Do not load a classifier's LayerNorm ``norm{i}`` into a BatchNorm output norm.

    An ImageNet checkpoint's final LN is ``norm3``, while detection/segmentation backbones have
    BN output norms of the same size; as in the official downstream code, those start from their
    initialisation (the entries are dropped, so a strict load reports them).
    """
    for i in out_indices:
        key = f'{prefix}norm{i}.'
        if key + 'weight' in state and key + 'running_mean' not in state:
            for name in ('weight', 'bias'):
                state.pop(key + name, None)


def prepare_backbone_state(backbone: 'LocalMixerNet', state: Dict[str, Any], prefix: str,
                           version: Optional[int], out_norm_cf: bool,
                           unexpected_keys: Sequence[str] = ()) -> None:
    """Ready ``state`` for ``backbone`` (called by ``LocalMixerNet._load_from_state_dict``).

    In place: a whole-model layout loaded into a backbone alone is unwrapped, official keys
    under ``prefix`` are converted, keys of older versions migrated, a classifier's LN output
    norm kept out of BN output norms (``out_norm_cf``, not in strict mode); then
    :func:`check_backbone_state` (``unexpected_keys``: those the parents reported so far, named
    in the error when nothing reached the backbone). ``backbone`` is read only (its class name, ``arch_settings``,
    ``num_stages``, ``out_indices`` and ``state_dict()``).
    """
    if prefix == '':
        _unwrap_for_backbone(state)
    unconverted = _convert_under(state, prefix, backbone)
    migrate_keys(state, prefix, version, type(backbone)._version)
    if out_norm_cf and not _STRICT.get():
        drop_classifier_norms(state, prefix, backbone.out_indices)
    check_backbone_state(backbone, state, prefix, unconverted, out_norm_cf, unexpected_keys)


def _take_official_classifier(parent, state, prefix, name):
    """``{'model': ...}`` or official classifier keys at ``prefix`` -> ``backbone.*`` (+ head)."""
    nested = state.get(prefix + 'model')
    if isinstance(nested, dict) and _is_official(nested):
        del state[prefix + 'model']
        state.update({prefix + re.sub(r'^module\.', '', k): v for k, v in nested.items()})
    top = {'patch_embed', 'layers', 'norm', 'head', 'absolute_pos_embed'}
    official = {k: v for k, v in _sub(state, prefix).items() if k.split('.')[0] in top}
    if 'patch_embed.proj.weight' not in official:
        return
    for key in official:
        del state[prefix + key]
    try:
        converted, info = convert_official({'model': official})
    except UnrecognisedCheckpoint as e:
        raise CheckpointMismatch(f'an official classification checkpoint that cannot be '
                                 f'converted: {e}') from e
    check_architecture(info['backbone'], getattr(parent, name))
    fc = getattr(getattr(parent, 'head', None), 'fc', None)
    note = 'backbone.* + head.fc.*'
    if not isinstance(fc, torch.nn.Linear):
        converted = {k: v for k, v in converted.items() if not k.startswith('head.')}
        note = 'backbone.* (its classification head dropped)'
    state.update((prefix + k.replace('backbone.', name + '.', 1), v) for k, v in converted.items())
    bb = info['backbone']
    _log(f"converted an official {bb['type']} classification checkpoint "
         f"({_short_arch(bb['arch'])}, {info['num_classes']} classes) into {note}")


def _adapt_head(parent, state, prefix):
    """22K -> 1K head mapping; another class count re-initialises the head (warning)."""
    fc = getattr(getattr(parent, 'head', None), 'fc', None)
    key_w, key_b = prefix + 'head.fc.weight', prefix + 'head.fc.bias'
    if not isinstance(fc, torch.nn.Linear) or not isinstance(state.get(key_w), torch.Tensor):
        return  # a value that is not a tensor is reported by the strict check / by torch
    rows, want = state[key_w].shape[0], fc.out_features
    if rows == want:
        return
    if is_22k_to_1k(rows, want):
        state[key_w], bias = map_22k_to_1k(state[key_w], state.get(key_b))
        if bias is not None:
            state[key_b] = bias
        extra = ' (the last, unused row of the 21842-class head dropped)' if rows == 21842 else ''
        _log(f'mapped the {rows}-class ImageNet-22K head onto the {want} ImageNet-1K classes '
             f'with map22kto1k.txt{extra}')
    elif not _STRICT.get():
        state.pop(key_w)
        state.pop(key_b, None)
        _log(f'the checkpoint head head.fc has {rows} classes, the model {want}: the '
             'classification head is re-initialised (fine-tuning on another label set)',
             level=logging.WARNING)


def parent_pre_hook(parent: nn.Module, state: Dict[str, Any], prefix: str,
                    local_metadata: Dict[str, Any], strict: bool, missing_keys: List[str],
                    unexpected_keys: List[str], error_msgs: List[str]) -> None:
    """Pre-hook of the module holding an mmdwnet backbone as ``backbone`` (see the module
    doc), given per instance by :func:`attach_checkpoint_hooks`."""
    name = 'backbone'
    backbone = getattr(parent, name)
    bprefix = f'{prefix}{name}.'
    _take_official_classifier(parent, state, prefix, name)
    if not any(k.startswith(bprefix) for k in state):
        tops = sorted({k[len(prefix):].split('.')[0] for k in state if k.startswith(prefix)})
        raise CheckpointMismatch(
            f'the checkpoint has no weights for the {type(backbone).__name__} backbone of this '
            f'{type(parent).__name__}: no key starts with {bprefix!r} (its top-level names: '
            f'{tops[:10]}). A wrong prefix, or not a checkpoint of this model.')
    official = _is_official(_sub(state, bprefix))
    unconverted = _convert_under(state, bprefix, backbone)
    fc = getattr(getattr(parent, 'head', None), 'fc', None)
    head_keys = [k for k in state if k.startswith(prefix + 'head.fc.')]
    if official and head_keys and not isinstance(fc, torch.nn.Linear):
        for key in head_keys:  # an official classification file relocated by the loading gate
            del state[key]
        _log(f'the classification head of the official file ({", ".join(head_keys)}) dropped: '
             f'this {type(parent).__name__} has no head.fc')
    if unconverted or _STRICT.get():  # the backbone's own report names the likely cause
        check_backbone_state(backbone, state, bprefix, unconverted,
                             getattr(backbone, '_out_norm_cf', False))
    _adapt_head(parent, state, prefix)
    if _STRICT.get():
        problem = describe_mismatch(parent.state_dict(), _sub(state, prefix))
        if problem:
            raise CheckpointMismatch(
                f'the checkpoint does not match the {type(parent).__name__} being evaluated: '
                f'{problem}. A checkpoint of another model, or of another number of classes.')


def attach_checkpoint_hooks(model: nn.Module) -> bool:
    """Give ``model`` (or the model a wrapper holds), when it holds an mmdwnet backbone as
    ``backbone``, :func:`parent_pre_hook` -- on this instance only, once.

    Called by what mmdwnet builds (:func:`mmdwnet.apis.init_model`, the runner of ``tools/``,
    :class:`~mmdwnet.engine.SafeLoadingHook`); call it yourself on a model you build and load
    with a bare ``mmengine.runner.load_checkpoint`` to get the 22K -> 1K head mapping, the head
    re-initialisation on another class count and the whole-model strict check.

    Returns:
        bool: whether ``model`` holds an mmdwnet backbone (and so has the hook).
    """
    from mmengine.model import is_model_wrapper
    parent = model.module if is_model_wrapper(model) else model
    child = getattr(parent, 'backbone', None)
    if not getattr(child, 'converts_official_checkpoints', False):
        return False
    if not getattr(parent, '_mmdwnet_parent_hook', False):
        parent._register_load_state_dict_pre_hook(parent_pre_hook, with_module=True)
        parent._mmdwnet_parent_hook = True
    return True


def relocate_official_classifier(ckpt: Any) -> Any:
    """An official classification file ``{'model': {layers.*, patch_embed.*, head.*}}`` ->
    ``{'state_dict': {'backbone.' + official backbone keys, 'head.fc.*'}}``; anything else is
    returned unchanged (the same object).

    Pure and cheap: the backbone keys keep the official layout, so the backbone's own
    ``_load_from_state_dict`` converts them and checks the architecture against itself. Applied
    by the loading gate (:func:`mmdwnet.utils.safe_loading`): a classifier loads an official
    file through ``mmengine.runner.load_checkpoint`` / ``mmpretrain.get_model`` inside it.
    """
    nested = ckpt.get('model') if isinstance(ckpt, dict) else None
    if not isinstance(nested, dict) or not all(isinstance(k, str) for k in nested):
        return ckpt
    body = {re.sub(r'^module\.', '', k): v for k, v in nested.items()}
    if 'patch_embed.proj.weight' not in body or any(k.startswith('backbone.') for k in body):
        return ckpt
    state = {}
    for key, value in body.items():
        if key in ('head.weight', 'head.bias'):
            state['head.fc.' + key.split('.')[1]] = value
        else:
            state['backbone.' + key] = value
    _log('an official classification file: its keys are placed under backbone.* and '
         'head.fc.* (the backbone converts them)')
    return {'state_dict': state}


def pretrained_init_cfg(init_cfg):
    """Split ``init_cfg`` into ``(the Pretrained entry or None, the other entries or None)``."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    pretrained = [c for c in cfgs if isinstance(c, dict) and c.get('type') == 'Pretrained']
    others = [c for c in cfgs if c is not None and c not in pretrained]
    return (pretrained[-1] if pretrained else None), (others or None)


def load_pretrained(backbone: 'LocalMixerNet', checkpoint: str, prefix: Optional[str] = None,
                    map_location: Union[str, torch.device, None] = 'cpu') -> None:
    """``init_cfg=dict(type='Pretrained', checkpoint, prefix)`` of an mmdwnet backbone.

    Reads any accepted layout (see the module doc): the backbone part is found with ``prefix``
    (e.g. ``'backbone.'``), or without it as mmdet's Swin does (``backbone.*`` keys if present,
    else the whole state dict); an official classification file is accepted with either.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmdwnet.utils.torch_load import safe_loading
    with safe_loading():  # every scheme, the hub cache: weights only, CRC-checked
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location,
                                                logger='current')
    if not isinstance(ckpt, dict):
        raise CheckpointMismatch(f'{checkpoint}: expected a dict checkpoint, got '
                                 f'{type(ckpt).__name__}')
    state = ckpt.get('state_dict', ckpt.get('model', ckpt))
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        sub = _sub(state, prefix)
        if not sub and _is_official(state):
            sub = state  # an official classification file: its keys have no prefix
        elif not sub:
            tops = sorted({k.split('.')[0] for k in state})
            raise CheckpointMismatch(
                f'init_cfg prefix {prefix!r}: no key of {checkpoint} starts with it (its '
                f'top-level names: {tops[:10]}). Fix the prefix, or drop it.')
        state = sub
    backbone.load_state_dict(state, strict=False)  # its _load_from_state_dict converts, checks
