"""Build a model from a config file and load a checkpoint, as the toolboxes do."""
import copy
from pathlib import Path
from typing import Optional, Union

from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.utils import import_modules_from_strings
from torch import nn

from mmdwnet.converters.loading import (CheckpointMismatch, attach_checkpoint_hooks,
                                        check_finite_weights,
                                        describe_mismatch, strict_loading)
from mmdwnet.registry import explain_unknown_types
from mmdwnet.utils.torch_load import safe_loading

__all__ = ['init_model', 'CheckpointMismatch', 'describe_mismatch']


def _read_config(config, cfg_options):
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
    return cfg


def _build_bare(cfg, checkpoint, device):
    """A config without ``default_scope`` (e.g. a backbone alone): build, load strictly."""
    from mmengine.runner.checkpoint import load_checkpoint
    model = ROOT_MODELS.build(copy.deepcopy(cfg.model))
    attach_checkpoint_hooks(model)
    if checkpoint is not None:
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
        meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
        if 'dataset_meta' in meta:
            model.dataset_meta = meta['dataset_meta']
    return model.to(device)


def _is_task_model(cfg, scope):
    """Whether ``cfg.model`` is a whole task model (a ``BaseModel``: classifier, detector,
    segmentor) that the toolbox's builder expects, rather than a part (a backbone alone)."""
    from mmengine.model import BaseModel
    model_type = cfg.model.get('type')
    if not isinstance(model_type, str):
        return isinstance(model_type, type) and issubclass(model_type, BaseModel)
    with ROOT_MODELS.switch_scope_and_registry(scope) as registry:
        cls = registry.get(model_type)
    return cls is not None and issubclass(cls, BaseModel)


def init_model(config: Union[str, Path, Config], checkpoint: Optional[str] = None,
               device: str = 'cpu', cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the model of ``config`` and load ``checkpoint``: what the toolboxes build.

    By the config's ``default_scope`` this is ``mmpretrain.get_model(cfg, pretrained=...)``
    (the classifier with the config's top-level ``data_preprocessor``: mean/std, BGR->RGB),
    ``mmdet.apis.init_detector`` or ``mmseg.apis.init_model``; a config without a scope (a
    backbone alone, or a part such as a backbone in any scope) is built from mmengine's registry.  ``checkpoint`` may be an mmdwnet
    checkpoint or an official DemystifyLocalViT / Swin file, local or URL: official layouts are
    converted on load (:mod:`mmdwnet.converters.loading`).  The load is strict
    (:func:`~mmdwnet.converters.loading.strict_loading`): a checkpoint of another architecture,
    or one that leaves any tensor of the model unloaded or gives it a value that is not a tensor
    of its shape and kind of dtype, raises :class:`CheckpointMismatch`; a checkpoint whose
    weights hold NaN/inf raises :class:`~mmdwnet.converters.loading.NonFiniteWeights`.  Every
    read is weights-only and CRC-checked (:func:`mmdwnet.utils.safe_loading`), whatever the
    scheme (local path, ``https://``, ``torchvision://``, ``open-mmlab://`` ...).

    Args:
        config (str | Path | Config): the config.
        checkpoint (str | None): checkpoint path or URL. Default: None (no weights loaded; the
            config's ``init_cfg`` is kept for a later ``init_weights()``).
        device (str): Default: 'cpu'.
        cfg_options (dict | None): overrides merged into the config.

    Returns:
        nn.Module: the model in eval mode, with ``cfg`` attached.
    """
    cfg = _read_config(config, cfg_options)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    import mmdwnet  # noqa: F401  (registers the modules)

    scope = cfg.get('default_scope', None)
    with safe_loading(), strict_loading(), explain_unknown_types():
        if scope is not None and not _is_task_model(cfg, scope):
            with ROOT_MODELS.switch_scope_and_registry(scope):
                model = _build_bare(cfg, checkpoint, device)
        elif scope == 'mmpretrain':
            from mmpretrain import get_model
            from mmengine.runner.checkpoint import load_checkpoint
            model = get_model(cfg, pretrained=False, device=device)
            attach_checkpoint_hooks(model)  # head mapping, whole-model strict check
            if checkpoint:  # what get_model(pretrained=checkpoint) does, after the hook
                ckpt = load_checkpoint(model, checkpoint, map_location='cpu')
                meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
                if 'dataset_meta' in meta:
                    model.dataset_meta = meta['dataset_meta']
        elif scope == 'mmdet':
            from mmdet.apis import init_detector

            # cfg_options (already merged) given: init_detector keeps the backbone's init_cfg
            model = init_detector(cfg, checkpoint, device=device,
                                  cfg_options=None if checkpoint else {})
        elif scope == 'mmseg':
            from mmseg.apis import init_model as init_segmentor
            backbone_init = copy.deepcopy(cfg.model.get('backbone', {}).get('init_cfg'))
            model = init_segmentor(cfg, checkpoint, device=device)
            if checkpoint is None and backbone_init is not None:
                model.backbone.init_cfg = backbone_init  # mmseg's init_model drops it
        elif scope is None:
            model = _build_bare(cfg, checkpoint, device)
        else:
            raise ValueError(f"config {config} has default_scope={scope!r}; init_model builds "
                             "'mmpretrain', 'mmdet' and 'mmseg' models or scope-less ones")
    if checkpoint is not None:
        check_finite_weights(model, f'checkpoint {checkpoint}')
    model.cfg = cfg
    model.eval()
    return model
