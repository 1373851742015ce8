"""Resize a checkpoint's kernels and relative position tables for a model of another
kernel/window size (the paper's Table 14: 224 -> 384 fine-tuning with larger kernels).

    python tools/analysis_tools/resize_kernels.py SRC DST --config TARGET_CONFIG \
        [--mode bicubic|bilinear] [--kernel-scale none|sum] [--force]

The rules (kernels, kernel generators, position tables) are those of
:mod:`mmdwnet.analysis.resize_kernels`. DST is never SRC, an existing DST is replaced only with
``--force``, and DST is written atomically. Exit status 2 on any refused input.
"""
import argparse
import sys

import mmdwnet  # noqa: F401  (registers the modules, lets torch.load read mmengine checkpoints)
from mmdwnet.analysis.resize_kernels import ResizeError, resize_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='checkpoint of the source model (mmengine format)')
    parser.add_argument('dst', help='where to write the resized checkpoint')
    parser.add_argument('--config', required=True, help='config of the target model')
    parser.add_argument('--mode', choices=['bicubic', 'bilinear'], default='bicubic',
                        help='interpolation of kernels (tables are always bicubic)')
    parser.add_argument('--kernel-scale', choices=['none', 'sum'], default='none',
                        help="'none' (default): plain interpolation, as the paper and Swin; "
                        "'sum': scale kernels by (k/k')^2 to keep their sums")
    parser.add_argument('--force', action='store_true', help='replace an existing DST')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        resized = resize_checkpoint(args.src, args.dst, args.config, args.mode,
                                    args.kernel_scale, force=args.force)
    except (ResizeError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'resized {len(resized)} entries ({args.mode}, kernel scale {args.kernel_scale}); '
          f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
