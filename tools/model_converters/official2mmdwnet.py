"""Convert an official DemystifyLocalViT or Swin checkpoint into mmdwnet's layout.

    python tools/model_converters/official2mmdwnet.py SRC DST [--config-out CFG.py] [--force]

SRC may be a classification checkpoint ``{'model': ...}`` (DWNet, D-DWNet, I-D-DWNet, Swin), or
an mmdet 2.x / mmseg 0.x downstream checkpoint (whole detector/segmentor or backbone only).
The architecture is inferred from tensor shapes; ``mmdwnet.apis.init_model(CFG.py, DST)``
rebuilds the model.  Not needed to use official files (``init_cfg``, ``load_from``,
``tools/test.py`` and ``init_model`` convert them on load); it writes mmdwnet-format files.

The source is validated first (every stage and block present, consistent shapes, no stray
keys): a damaged checkpoint is an error.  Nothing is ever lost: DST or --config-out equal to
SRC is refused, an existing output is overwritten only with --force, and both outputs are
written to temporary files next to them and renamed only when everything succeeded.
"""
import sys

from mmdwnet.converters.official2mmdwnet import main

if __name__ == '__main__':
    sys.exit(main())
