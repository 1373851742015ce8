"""mmdwnet's classification models in mmpretrain's model hub.

``import mmdwnet`` calls :func:`register_models`, after which mmpretrain's own entry points know
every model of ``configs/classification/metafile.yml`` by its config name::

    from mmpretrain import get_model, list_models, ImageClassificationInferencer
    list_models('*dwnet*')
    model = get_model('dwnet-tiny_8xb128_in1k')                    # random weights
    with mmdwnet.utils.safe_loading():  # official weights: read weights-only, keys placed
        model = get_model('dwnet-tiny_8xb128_in1k', pretrained=True)   # the metafile's Weights

The metafiles and configs are found in ``mmdwnet/.mim`` (where ``pip``/``mim`` install them) or,
in a source checkout, in the repository root.

Detection and segmentation models are not registered anywhere: mmdet's ``DetInferencer`` and
mmseg's ``MMSegInferencer`` look model names up only in the metafiles of the package named by
their ``scope`` (one of mmengine's ``MODULE2PACKAGE``, OpenMMLab's own packages), and build the
model under that scope. Pass them the config path instead (``DetInferencer(model=CONFIG,
weights=CKPT)``).
"""
import warnings
from pathlib import Path
from typing import List, Optional

PACKAGE_DIR = Path(__file__).resolve().parent
CLASSIFICATION_METAFILE = 'configs/classification/metafile.yml'


def model_index_root() -> Optional[Path]:
    """The folder holding ``model-index.yml`` and ``configs/``: ``mmdwnet/.mim`` when the package
    is installed (pip, mim, editable), else the source checkout's root; None when neither has
    them."""
    for root in (PACKAGE_DIR / '.mim', PACKAGE_DIR.parent):
        if (root / 'model-index.yml').is_file() and (root / CLASSIFICATION_METAFILE).is_file():
            return root
    return None


def register_models() -> bool:
    """Register the classification metafile with ``mmpretrain.apis.ModelHub`` (idempotent).

    Returns:
        bool: True when the models are registered (now or before); False, with a warning, when
        the metafile cannot be found.
    """
    from mmpretrain.apis.model import ModelHub

    import yaml
    root = model_index_root()
    if root is None:
        warnings.warn(f'mmdwnet: no model-index.yml with {CLASSIFICATION_METAFILE} in '
                      f'{PACKAGE_DIR / ".mim"} or {PACKAGE_DIR.parent}; mmpretrain.get_model() '
                      'will not know the mmdwnet model names (reinstall with `pip install -e .`)')
        return False
    metafile = root / CLASSIFICATION_METAFILE
    names = [m['Name'].lower() for m in yaml.safe_load(metafile.read_text())['Models']]
    if all(name in ModelHub._models_dict for name in names):
        return True
    ModelHub.register_model_index(str(metafile), config_prefix=str(root))
    return True


def preset_model_names() -> List[str]:
    """The hub names of the presets' ImageNet-1k classification models, one per preset and arch
    of :data:`mmdwnet.models.backbones.presets.PRESETS` (e.g. ``'dwnet-tiny_8xb128_in1k'``)."""
    from mmdwnet.models.backbones.presets import PRESETS
    return [row.config_name(arch) for row in PRESETS.values() for arch in row.archs]
