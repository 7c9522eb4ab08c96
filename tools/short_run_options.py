#!/usr/bin/env python
"""Print the ``--cfg-options`` of a short run of TASK on generated data (for shell
scripts; :func:`mmbiformer.utils.short_run.short_run_options` says what they set).

    python3 tools/short_run_options.py TASK DATA_ROOT H W LENGTH BATCH
"""
import argparse

from mmbiformer.utils.short_run import TASKS, as_cli, short_run_options


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('task', choices=sorted(TASKS))
    parser.add_argument('data_root')
    # Two positionals, not one of nargs=2: argparse cannot print a tuple metavar of a
    # positional (-h and a usage error crashed).
    parser.add_argument('H', type=int, help='image height of the generated data')
    parser.add_argument('W', type=int, help='image width')
    parser.add_argument('length', type=int,
                        help='epochs (cls, det); 4 x length iterations (seg)')
    parser.add_argument('batch', type=int, help='images per GPU')
    args = parser.parse_args(argv)
    opts = short_run_options(args.task, args.data_root, (args.H, args.W), args.length,
                             args.batch)
    print(' '.join(as_cli(opts)))


if __name__ == '__main__':
    main()
