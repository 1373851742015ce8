from .official import (UnrecognisedCheckpoint, convert_official, infer_backbone, load_official)
from .writer import convert_file

__all__ = ['convert_official', 'infer_backbone', 'load_official', 'UnrecognisedCheckpoint',
           'convert_file']
