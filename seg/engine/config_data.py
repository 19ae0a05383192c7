"""Configs stored in checkpoints are data: nested dicts, lists, strings, numbers, booleans and None.

A config file a user passes on the command line is code the user chose, and mmengine executes it.
A config found inside a checkpoint is not: it came with a file somebody handed over. So a run
stores its resolved config as plain data (:func:`config_to_data`, under ``meta.cfg``) and every
reader rebuilds it without executing anything (:func:`config_from_data`). Checkpoints written
before this format carry the config as Python text in the same key (mmengine's ``pretty_text``); :func:`literal_config`
reads such text with a parser that accepts literals only (assignments of numbers, strings,
``True`` / ``False`` / ``None``, lists, tuples, dicts and ``dict(key=value, ...)``) and refuses
anything else with the line it found. Nothing of the text is ever run.

Plain data is not yet harmless: mmengine's registries, asked for a ``type`` they do not hold, import
the name's first part as a module and return any importable callable, which the builder then calls.
So :func:`config_from_data` checks every type name first (:func:`check_stored_config`): each must be a
name registered in ``seg``'s registries or the mmengine registries they inherit from, with no dot and
no scope, and the keys that switch scopes or import modules (``_scope_``, ``custom_imports``, a
``default_scope`` other than ``seg``) are refused. Nothing is imported or called before the check.
"""
from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from mmengine.config import Config

__all__ = ['DATA_KEY', 'check_stored_config', 'config_from_data', 'config_to_data', 'literal_config', 'plain_data']

DATA_KEY = 'cfg'
"""Key of the config in a checkpoint's ``meta``: a dict of plain data (older checkpoints: Python text)."""

_SCALARS = (str, int, float, bool, type(None))


def plain_data(value: Any, where: str = 'config') -> Any:
    """``value`` as nested dicts, lists, tuples, strings, numbers, booleans and None.

    Args:
        value: a config value (``ConfigDict`` and ``dict`` become ``dict``).
        where: the key path of ``value``, for the error message.

    Returns:
        A copy made of plain types only.

    Raises:
        ValueError: a value of another type (a class, a function, an array ...), naming its key.
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f'{where} has a non-string key {key!r}; a stored config holds string keys only')
            out[key] = plain_data(item, f'{where}.{key}')
        return out
    if isinstance(value, (list, tuple)):
        items = [plain_data(item, f'{where}[{i}]') for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise ValueError(f'{where} is a {type(value).__name__} ({value!r:.80}); a config stored in a checkpoint '
                     'holds plain data only (dicts, lists, strings, numbers, booleans, None): give registered '
                     "types by name (type='SGD'), not as Python objects")


def config_to_data(cfg: Config) -> dict:
    """The resolved config as plain data, for a checkpoint.

    Raises:
        ValueError: the config holds a value that is not plain data (its key is named).
    """
    return plain_data(cfg.to_dict())


TYPE_KEYS = ('type', 'constructor', 'runner_type')
"""Keys whose string value mmengine looks up in a registry: ``type`` anywhere, an optimizer wrapper's
``constructor`` and the top-level ``runner_type``."""


def _type_error(source: str, where: str, value: Any, why: str) -> ValueError:
    return ValueError(f'{source}: {where} = {value!r} {why}; a stored config may name only types registered in '
                      "seg's registries (e.g. 'EncoderDecoder', 'CCHead', 'SGD'), without a dot or scope; "
                      'it is data and nothing it names is imported (pass --config CONFIG to use your own code)')


def check_stored_config(data: Mapping, source: str = 'stored config') -> None:
    """Refuse a stored config that would make mmengine import a module or call an unregistered callable.

    Every ``type`` (and ``constructor`` / ``runner_type``) must be a string registered in ``seg``'s
    registries or the mmengine registries they inherit from (:func:`seg.registry.registered_types`),
    without a dot; ``_scope_`` and ``custom_imports`` are refused anywhere, and so is a
    ``default_scope`` other than ``'seg'``. Nothing is imported from the names before this check.

    Args:
        data: the config as plain data (from a checkpoint, an ONNX file's metadata, a run record ...).
        source: the file it came from, for the error message.

    Raises:
        ValueError: naming the file, the key path and the offending value.
    """
    from seg.registry import registered_types

    allowed = registered_types()
    scope = data.get('default_scope')
    if scope not in (None, 'seg'):
        raise ValueError(f"{source}: default_scope = {scope!r}; a stored config may only use the scope 'seg'")

    def walk(node: Any, where: str, top: bool = False) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                path = key if top else f'{where}.{key}'
                if key in ('_scope_', 'custom_imports'):
                    raise ValueError(f'{source}: {path} = {value!r} is refused; a stored config may not import '
                                     'modules or switch registry scopes')
                if key in TYPE_KEYS and (key != 'runner_type' or top):
                    if not isinstance(value, str):
                        raise _type_error(source, path, value, 'is not a name')
                    if '.' in value or ':' in value:
                        raise _type_error(source, path, value, 'is a dotted or scoped name')
                    if value not in allowed:
                        raise _type_error(source, path, value, 'is not a registered type')
                else:
                    walk(value, path)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f'{where}[{i}]')

    walk(data, '', top=True)


def config_from_data(data: Mapping, source: str = 'checkpoint') -> Config:
    """Rebuild a config from plain data without executing anything, its type names checked first.

    Raises:
        ValueError: ``data`` is not a dict of plain data, or names a type that is not registered, a
            dotted name, a scope or imports (:func:`check_stored_config`).
    """
    if not isinstance(data, Mapping):
        raise ValueError(f'{source}: the stored config must be a dict, got {type(data).__name__}')
    plain = plain_data(dict(data), f'{source} config')
    check_stored_config(plain, source)
    return Config(plain)


class _Literal(ast.NodeVisitor):
    """Evaluates the literal subset of Python an mmengine ``pretty_text`` is written in."""

    def __init__(self, source: str) -> None:
        self.source = source

    def refuse(self, node: ast.AST, what: str) -> ValueError:
        line = getattr(node, 'lineno', '?')
        return ValueError(f'{self.source}: line {line} of the stored config text is {what}; a stored config '
                          'is read as literals only (numbers, strings, True/False/None, lists, tuples, dicts, '
                          'dict(key=value)) and never executed')

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, _SCALARS):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.value(node.operand)
            if isinstance(operand, (int, float)) and not isinstance(operand, bool):
                return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.List):
            return [self.value(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self.value(e) for e in node.elts)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise self.refuse(node, 'a dict with ** unpacking')
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values)}
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict'
                and not node.args and all(k.arg is not None for k in node.keywords)):
            return {k.arg: self.value(k.value) for k in node.keywords}
        raise self.refuse(node, f'not a literal ({type(node).__name__})')

    def module(self, tree: ast.Module) -> dict:
        out: dict[str, Any] = {}
        for stmt in tree.body:
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)):
                raise self.refuse(stmt, f'a {type(stmt).__name__} statement, not "name = literal"')
            out[stmt.targets[0].id] = self.value(stmt.value)
        return out


def literal_config(text: str, source: str = 'checkpoint') -> dict:
    """Read a config written as Python text (``name = literal`` lines) without executing it.

    Args:
        text: the config text, e.g. mmengine's ``Config.pretty_text`` stored by older checkpoints.
        source: where the text came from, for the error message.

    Returns:
        The config as a dict of plain data.

    Raises:
        ValueError: the text is not valid Python or holds anything but literal assignments.
    """
    try:
        tree = ast.parse(text, mode='exec')
    except SyntaxError as exc:
        raise ValueError(f'{source}: the stored config text is not valid Python (line {exc.lineno}): '
                         f'{exc.msg}') from exc
    return _Literal(source).module(tree)
