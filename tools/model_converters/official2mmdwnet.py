"""Convert an official DemystifyLocalViT or Swin checkpoint into mmdwnet's layout.

    python tools/model_converters/official2mmdwnet.py SRC DST --config-out CFG.py

SRC may be a classification checkpoint ``{'model': ...}`` (DWNet, D-DWNet, I-D-DWNet, Swin), or
an mmdet 2.x / mmseg 0.x downstream checkpoint (whole detector/segmentor or backbone only).
The architecture is inferred from tensor shapes; ``mmdwnet.apis.init_model(CFG.py, DST)``
rebuilds the model.
"""
import argparse
import sys

from mmdwnet.converters import UnrecognisedCheckpoint, convert_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument('--config-out', help='write a config that rebuilds the model here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        info = convert_file(args.src, args.dst, args.config_out)
    except (UnrecognisedCheckpoint, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    bb = info['backbone']
    print(f"converted {info['kind']} checkpoint: {bb['type']} arch={bb['arch']} -> {args.dst}")
    if args.config_out:
        print(f'config: {args.config_out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
