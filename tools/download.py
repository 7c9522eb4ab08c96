#!/usr/bin/env python
"""Download model-zoo checkpoints by name (verified, resumable, converted, cached).

    python tools/download.py --list
    python tools/download.py biformer-s_in1k
    MMBIFORMER_MIRROR=/mnt/weights python tools/download.py biformer-s_in1k
    python tools/download.py biformer-s_in1k --url http://host/biformer_small_in1k.pth
"""
import argparse
import sys

from mmbiformer.weights.checkpoint import CheckpointError
from mmbiformer.weights.model_zoo import ModelZooError, cache_dir, fetch, load_index


def model_table() -> str:
    rows = [('name', 'task', 'dataset', 'published', 'weights', 'config')]
    for name, m in load_index().items():
        res = m.get('Results', [])
        metrics = ', '.join(f'{k} {v}' for r in res for k, v in r['Metrics'].items())
        rows.append((name, res[0]['Task'] if res else '', res[0]['Dataset'] if res else '',
                     metrics, 'yes' if m.get('Weights') else 'no (logs only)',
                     m.get('Config', '')))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('names', nargs='*', help='model names (see --list)')
    parser.add_argument('--list', action='store_true', help='print the model table')
    parser.add_argument('--url', action='append', help='download from this URL or file '
                        'instead of the listed ones (repeatable: tried in order)')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if args.list or not args.names:
        print(model_table())
        print(f'\ncache: {cache_dir()}')
        return
    for name in args.names:
        try:
            path = fetch(name, urls=args.url, progress=not args.no_progress)
        except (ModelZooError, CheckpointError) as e:
            sys.exit(f'error: {e}')
        print(f'{name}: {path}')


if __name__ == '__main__':
    main()
