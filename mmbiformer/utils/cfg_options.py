"""``--cfg-options`` for the tools: mmengine's ``DictAction``, plus values written as
Python.

mmengine's parser reads ``key=[dict(type='EMAHook')]`` as a list holding the *string*
``"dict(type='EMAHook')"`` (the runner then fails with ``'str' object has no attribute
'get'``), and ``param_scheduler=[dict(type='LinearLR', start_factor=0.1)]`` sends it
into endless recursion. A value that starts like a Python list, tuple, dict or
``dict(...)`` is read here as Python literals (``ast``, nothing executed); any other
value keeps mmengine's meaning (``a=1`` an int, ``a=1,2`` a list, ``a=x`` a string).
"""
import argparse
import ast

from mmengine.config import DictAction

_PYTHON_STARTS = ('[', '(', '{', 'dict(')


def _literal(node: ast.AST):
    """The value of an expression made of literals, containers and ``dict(k=v)``."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args
            and all(k.arg is not None for k in node.keywords)):
        return {k.arg: _literal(k.value) for k in node.keywords}
    raise ValueError(ast.unparse(node))


def parse_value(text: str):
    """A ``--cfg-options`` value: Python literals where it starts like them (raises
    ``ValueError`` naming the part that is not a literal), else mmengine's reading."""
    text = text.strip()
    if text.startswith(_PYTHON_STARTS):
        try:
            tree = ast.parse(text, mode='eval')
        except SyntaxError as e:
            raise ValueError(f'{text!r} is not a valid Python expression ({e.msg})')
        try:
            return _literal(tree.body)
        except ValueError as e:
            raise ValueError(f'{text!r}: {e} is not a literal (allowed: numbers, strings, '
                             f'True/False/None, lists, tuples, dicts, dict(key=value))')
    return DictAction._parse_iterable(text)


class ConfigOptions(argparse.Action):
    """``--cfg-options key=value ...`` into a dict for ``Config.merge_from_dict``."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        for item in values:
            key, sep, text = item.partition('=')
            if not sep or not key:
                parser.error(f'{option_string} takes key=value pairs, got {item!r}')
            try:
                options[key] = parse_value(text)
            except (ValueError, RecursionError) as e:
                parser.error(f'{option_string} {key}=...: {e}')
        setattr(namespace, self.dest, options)
