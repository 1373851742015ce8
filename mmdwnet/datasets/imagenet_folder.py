"""ImageNet in mmpretrain's folder layout, with errors instead of warnings for bad folders."""
from typing import List

from mmengine import fileio
from mmpretrain.datasets import ImageNet
from mmpretrain.registry import DATASETS

LAYOUT = '<data_root>/<split>/<class folder>/<image>.JPEG'


class DatasetLayoutError(FileNotFoundError):
    """The data folder does not have the layout the config expects."""


@DATASETS.register_module()
class ImageNetFolder(ImageNet):
    """mmpretrain's :class:`~mmpretrain.datasets.ImageNet` that checks the folder layout.

    Reads ``data_root/split/<class>/*.JPEG`` (one folder per class, classes in sorted folder
    order, as ``torchvision.datasets.ImageFolder`` and the official DWNet code) or, when
    ``data_root/meta/<split>.txt`` exists or ``ann_file`` is given, that annotation file.

    mmpretrain only warns about an empty class folder (the class then never appears in
    training) and reports a missing folder as a bare ``FileNotFoundError`` of ``os.scandir``.
    Here, in the folder layout, these raise :class:`DatasetLayoutError` naming the path and the
    expected layout:

    * ``data_root/split`` is not a folder;
    * a class folder holds no image with one of ``extensions``;
    * the number of class folders differs from ``metainfo['classes']`` (1000 for ImageNet;
      pass ``metainfo=dict(classes=[...])`` for a subset).

    Args: see :class:`~mmpretrain.datasets.ImageNet`.
    """

    def load_data_list(self) -> List[dict]:
        if not self.ann_file and self.with_label:
            self._check_folder_layout()
        return super().load_data_list()

    def _check_folder_layout(self):
        root = self.img_prefix
        if not fileio.isdir(root):
            raise DatasetLayoutError(
                f'{type(self).__name__}: image folder {root!r} does not exist or is not a '
                f'folder. Expected the ImageNet folder layout {LAYOUT} (data_root='
                f'{self.data_root!r}); set data_root / split (or data_prefix) to where the '
                'images are, or provide an annotation file meta/<split>.txt.')
        folders = sorted(fileio.list_dir_or_file(root, list_dir=True, list_file=False))
        if not folders:
            raise DatasetLayoutError(
                f'{type(self).__name__}: {root!r} has no class folders. Expected the ImageNet '
                f'folder layout {LAYOUT}, one folder per class.')
        empty = []
        for folder in folders:
            files = fileio.list_dir_or_file(
                fileio.join_path(root, folder), list_dir=False, list_file=True, recursive=True)
            if not any(self.is_valid_file(f) for f in files):
                empty.append(fileio.join_path(root, folder))
        if empty:
            shown = ', '.join(repr(p) for p in empty[:5]) + (' ...' if len(empty) > 5 else '')
            raise DatasetLayoutError(
                f'{type(self).__name__}: {len(empty)} class folder(s) contain no image: '
                f'{shown}. Every class folder needs at least one image with an extension in '
                f'{sorted(self.extensions)}; remove the empty folders or add their images.')
        classes = self.CLASSES
        if classes is not None and len(classes) != len(folders):
            raise DatasetLayoutError(
                f'{type(self).__name__}: {root!r} has {len(folders)} class folders but the '
                f'dataset expects {len(classes)} classes (metainfo["classes"]). Use the full '
                'ImageNet-1k folders, or pass metainfo=dict(classes=[...]) listing your '
                'classes (and set the head\'s num_classes to match).')
