"""Official DemystifyLocalViT / Swin checkpoints: conversion and convert-on-load.

:func:`convert_file` (the converter's file writer, :mod:`mmdwnet.converters.writer`) is loaded on
first use: the writer builds models, and the models import this package.
"""
from .imagenet22k import load_22k_to_1k_map, map_22k_to_1k
from .loading import ALLOWED_MISMATCHES, CheckpointMismatch, strict_loading
from .official import (UnrecognisedCheckpoint, convert_official, infer_backbone, load_official)

__all__ = ['convert_official', 'infer_backbone', 'load_official', 'UnrecognisedCheckpoint',
           'convert_file', 'CheckpointMismatch', 'strict_loading', 'ALLOWED_MISMATCHES',
           'map_22k_to_1k', 'load_22k_to_1k_map']


def __getattr__(name):
    if name == 'convert_file':
        from .writer import convert_file
        return convert_file
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
