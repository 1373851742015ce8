"""Model zoo bookkeeping: measured Parameters/FLOPs in the metafiles, docs/model_zoo.md from them.

    # measure every model of a metafile (all three when no --metafile) and write the numbers in
    python tools/model_zoo.py update [--metafile FILE ...] [--only NAME ...] [--check]
    # write docs/model_zoo.md: per task, our measured numbers next to the paper's
    python tools/model_zoo.py render [--metafile FILE ...] [--paper-tables YAML] [--out FILE]

``update`` measures each model at its config's evaluation size and stores
``Metadata.Parameters`` / ``Metadata.FLOPs`` (never typed by hand); ``--check`` only compares and
exits 1 on a difference.  ``render`` puts them next to the paper's numbers.  The logic and the
metafile conventions are in :mod:`mmdwnet.analysis.model_zoo`.
"""
import argparse
import os.path as osp
import sys

from mmdwnet.analysis.model_zoo import (DEFAULT_METAFILES, DEFAULT_OUT, DEFAULT_PAPER_TABLES,
                                        ROOT, MetafileError, render, update_metafile)

def _metafiles(args_metafiles, required=False):
    if args_metafiles:
        missing = [m for m in args_metafiles if not osp.isfile(m)]
        if missing:
            raise FileNotFoundError(f'metafile(s) not found: {missing}')
        return args_metafiles
    found = [osp.join(ROOT, m) for m in DEFAULT_METAFILES if osp.isfile(osp.join(ROOT, m))]
    if required and not found:
        raise FileNotFoundError(f'none of {DEFAULT_METAFILES} exists under {ROOT}')
    return found


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    up = sub.add_parser('update', help='measure Parameters/FLOPs into the metafiles')
    up.add_argument('--metafile', nargs='+', help='metafile(s); default: all of '
                    + ', '.join(DEFAULT_METAFILES) + ' that exist')
    up.add_argument('--only', nargs='+', metavar='NAME', help='only these model names')
    up.add_argument('--check', action='store_true',
                    help='do not write; exit 1 when stored numbers differ from measured ones')
    rd = sub.add_parser('render', help='write the model zoo page')
    rd.add_argument('--metafile', nargs='+', help='metafile(s); default: all that exist')
    rd.add_argument('--paper-tables', default=DEFAULT_PAPER_TABLES,
                    help='paper_tables.yaml (default: %(default)s); skipped when absent')
    rd.add_argument('--out', default=osp.join(ROOT, DEFAULT_OUT), help='default: %(default)s')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.command == 'update':
            changed, measured = [], []
            for metafile in _metafiles(args.metafile, required=True):
                print(f'== {metafile}')
                c, m = update_metafile(metafile, args.only, args.check)
                changed, measured = changed + c, measured + m
            unknown = sorted(set(args.only or []) - set(measured))
            if unknown:
                raise MetafileError(f'--only: no model named {unknown} in the metafile(s)')
            if args.check and changed:
                print(f'stored Parameters/FLOPs differ for {changed}; run '
                      '`python tools/model_zoo.py update`', file=sys.stderr)
                return 1
            return 0
        out = render(_metafiles(args.metafile, required=True), args.paper_tables, args.out)
        print(f'wrote {out}')
        return 0
    except (MetafileError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
