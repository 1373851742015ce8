from .backbones import *  # noqa: F401,F403
from .mixers import *  # noqa: F401,F403
