from .backbones import *  # noqa: F401,F403
from .mixers import *  # noqa: F401,F403
from .norms import CCBN, SyncCCBN  # noqa: F401  (registers the norm layers)
from .utils import MixerAdapter, MixerSwap, swap_mixers  # noqa: F401
