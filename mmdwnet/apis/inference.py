"""Build a model from a config file and load a checkpoint."""
import copy
from pathlib import Path

from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint
from mmengine.utils import import_modules_from_strings

from mmdwnet.registry import explain_unknown_types


def _drop_pretrained(cfg):
    """Remove ``init_cfg=dict(type='Pretrained')`` entries: the checkpoint replaces them."""
    if isinstance(cfg, dict):
        init_cfg = cfg.get('init_cfg')
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            cfg['init_cfg'] = None
        for value in cfg.values():
            _drop_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _drop_pretrained(value)


def describe_mismatch(model_state, ckpt_state, show=8):
    """A short description of missing/unexpected/mis-shaped keys, or '' when they match."""
    missing = [k for k in model_state if k not in ckpt_state]
    unexpected = [k for k in ckpt_state if k not in model_state]
    shapes = [f'{k}: checkpoint {tuple(ckpt_state[k].shape)} vs model {tuple(v.shape)}'
              for k, v in model_state.items()
              if k in ckpt_state and hasattr(ckpt_state[k], 'shape')
              and tuple(ckpt_state[k].shape) != tuple(v.shape)]
    parts = []
    for what, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                       ('shape mismatches', shapes)):
        if keys:
            more = f' ... (+{len(keys) - show} more)' if len(keys) > show else ''
            parts.append(f'{len(keys)} {what}: ' + ', '.join(keys[:show]) + more)
    return '; '.join(parts)


class CheckpointMismatch(RuntimeError):
    """The checkpoint's keys or shapes do not match the model built from the config."""


def init_model(config, checkpoint=None, device='cpu', cfg_options=None):
    """Build the model of ``config`` (file path or :class:`Config`), load ``checkpoint``.

    The config's ``custom_imports`` are imported and its ``default_scope`` (``mmpretrain``,
    ``mmdet``, ``mmseg`` or none) is used to build ``cfg.model``.  Checkpoints are loaded
    strictly: missing or unexpected keys raise :class:`CheckpointMismatch`.

    Args:
        config (str | Path | Config): the config.
        checkpoint (str | None): checkpoint path (mmengine or converted official).
        device (str): Default: 'cpu'.
        cfg_options (dict | None): overrides merged into the config.

    Returns:
        nn.Module: the model in eval mode, with ``cfg`` attached.
    """
    if isinstance(config, (str, Path)):
        if not Path(config).is_file():
            raise FileNotFoundError(f'config file {config} does not exist')
        cfg = Config.fromfile(str(config))
    elif isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        raise TypeError(f'config must be a path or a Config, got {type(config).__name__}')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'config {config} has no `model`')
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    import mmdwnet  # noqa: F401  (registers the modules)

    model_cfg = copy.deepcopy(cfg.model)
    if checkpoint is not None:
        _drop_pretrained(model_cfg)
    scope = cfg.get('default_scope', None)
    with explain_unknown_types():
        if scope is not None:
            init_default_scope(scope)
            with DefaultScope.overwrite_default_scope(scope):
                model = ROOT_MODELS.build(model_cfg)
        else:
            model = ROOT_MODELS.build(model_cfg)
    model.cfg = cfg
    if checkpoint is not None:
        ckpt = _load_checkpoint(checkpoint, map_location='cpu')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
        state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
        problem = describe_mismatch(model.state_dict(), state)
        if problem:
            name = config if isinstance(config, (str, Path)) else 'the given config'
            raise CheckpointMismatch(
                f'checkpoint {checkpoint} does not match the model of {name}: {problem}. '
                'Official DemystifyLocalViT/Swin checkpoints must first be converted with '
                'tools/model_converters/official2mmdwnet.py; a checkpoint of another architecture '
                'needs its own config (the converter writes one with --config-out).')
        model.load_state_dict(state, strict=True)
        meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
        if 'dataset_meta' in meta:
            model.dataset_meta = meta['dataset_meta']
    model.to(device)
    model.eval()
    return model
