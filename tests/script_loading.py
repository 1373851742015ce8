"""Load a script of the repository (``tools/...``, ``demo/...``) as a module, so that tests call
its functions directly instead of running it as a process."""
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Optional, Union

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Union[str, Path], name: Optional[str] = None) -> ModuleType:
    """The module of ``path`` (relative to the repository root, or absolute), executed afresh
    under ``name`` (default: the file's stem); not put into ``sys.modules``."""
    path = ROOT / path
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
