"""Datasets for the ImageNet classification configs (needs mmpretrain)."""
from .imagenet_folder import ImageNetFolder

__all__ = ['ImageNetFolder']
