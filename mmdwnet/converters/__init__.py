from .imagenet22k import load_22k_to_1k_map, map_22k_to_1k
from .loading import ALLOWED_MISMATCHES, CheckpointMismatch, strict_loading
from .official import (UnrecognisedCheckpoint, convert_official, infer_backbone, load_official)
from .writer import convert_file

__all__ = ['convert_official', 'infer_backbone', 'load_official', 'UnrecognisedCheckpoint',
           'convert_file', 'CheckpointMismatch', 'strict_loading', 'ALLOWED_MISMATCHES',
           'map_22k_to_1k', 'load_22k_to_1k_map']
