"""The package's parts import each other in one direction: no loop between its
subpackages and top-level modules, counting the imports inside functions (which would
otherwise hide a loop until the one call that closes it). Read from the sources."""
import ast
import os
import os.path as osp

from helpers import ROOT

PACKAGE = osp.join(ROOT, 'mmbiformer')


def _part(module: str) -> str:
    """``mmbiformer.ops.bra`` -> ``ops``; ``mmbiformer`` itself -> ``mmbiformer``."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else parts[0]


def _is_part(name: str) -> bool:
    return osp.isdir(osp.join(PACKAGE, name)) or osp.isfile(osp.join(PACKAGE, name + '.py'))


def import_edges() -> dict:
    """``{part: {imported part: [file, ...]}}`` over every import in the package."""
    edges = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = osp.join(folder, name)
            here = osp.relpath(path, ROOT)[:-3].replace(os.sep, '.').split('.')
            if here[-1] == '__init__':
                here = here[:-1]
            package = here if name == '__init__.py' else here[:-1]
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                targets = []
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = (package[:len(package) - node.level + 1] if node.level else [])
                    module = '.'.join(base + ([node.module] if node.module else []))
                    # ``from .. import compat``: the names may be modules themselves
                    targets = [f'{module}.{a.name}' if module == 'mmbiformer'
                               and _is_part(a.name) else module for a in node.names]
                for target in targets:
                    if target.split('.')[0] != 'mmbiformer':
                        continue
                    a, b = _part('.'.join(here)), _part(target)
                    if a != b:
                        edges.setdefault(a, {}).setdefault(b, []).append(
                            osp.relpath(path, ROOT))
    return edges


def find_loop(edges: dict):
    """One loop of parts (a list that starts and ends with the same part), or None."""
    state = {}

    def visit(node, path):
        state[node] = 'open'
        for nxt in edges.get(node, {}):
            if state.get(nxt) == 'open':
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 'done'
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_find_loop_finds_one():
    assert find_loop({'a': {'b': []}, 'b': {'c': []}, 'c': {'a': []}}) == ['a', 'b', 'c', 'a']
    assert find_loop({'a': {'b': []}, 'b': {'c': []}}) is None


def test_no_import_loop_between_the_packages_parts():
    edges = import_edges()
    assert 'ops' in edges and 'utils' in edges  # the sources were read
    loop = find_loop(edges)
    where = [f'{a} -> {b}: {edges[a][b][:3]}' for a, b in zip(loop, loop[1:])] if loop else []
    assert loop is None, 'import loop:\n' + '\n'.join(where)


def test_the_op_layer_imports_no_toolbox_part():
    """``mmbiformer.ops`` needs only PyTorch (and ``errors``, ``private_api``: both import
    nothing but the standard library and torch): no engine, models or tools' helpers
    under it."""
    assert set(import_edges().get('ops', {})) <= {'errors', 'private_api'}


def test_the_network_imports_no_engine():
    """The backbone is the network: how it runs (CUDA graphs, compilation) is attached
    from outside by the engine, so ``mmbiformer.models`` imports nothing of it."""
    assert 'engine' not in import_edges().get('models', {})
