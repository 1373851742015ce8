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

The command line of ``tools/model_converters/official2mmdwnet.py`` (a thin wrapper around
:func:`main`); the conversion is :func:`mmdwnet.converters.writer.convert_file`.
"""
import argparse
import sys
from typing import List, Optional

from mmdwnet.converters.official import UnrecognisedCheckpoint
from mmdwnet.converters.writer import convert_file


__all__ = ['parse_args', 'main']

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument('--config-out', help='write a config that rebuilds the model here')
    parser.add_argument('--force', action='store_true',
                        help='overwrite DST / --config-out when they exist')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Convert as the tool does with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    status (2: unreadable or unrecognised source, or an output that may not be written)."""
    args = parse_args(argv)
    try:
        info = convert_file(args.src, args.dst, args.config_out, force=args.force)
    except (UnrecognisedCheckpoint, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    bb = info['backbone']
    print(f"converted {info['kind']} checkpoint: {bb['type']} arch={bb['arch']} -> {args.dst}")
    if args.config_out:
        print(f'config: {args.config_out}')
    return 0

