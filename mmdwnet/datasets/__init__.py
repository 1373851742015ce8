"""Datasets and data transforms for the classification configs (needs mmpretrain)."""
from .imagenet_folder import ImageNetFolder
from .transforms import PaintOnPhoto

__all__ = ['ImageNetFolder', 'PaintOnPhoto']
