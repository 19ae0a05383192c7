"""Layers import only downward: ops <- models <- datasets / evaluation / engine <- visualization / analysis
<- apis <- tools. Function-level imports count too; a package may import itself."""
import ast
import os

import pytest

from .conftest import ROOT

LAYERS = {
    'registry': 0, 'fileio': 0, 'worker_reports': 0, '__init__': 0,
    'ops': 1,
    'models': 2,
    'datasets': 3, 'evaluation': 3, 'engine': 3,
    'visualization': 4, 'analysis': 4,
    'apis': 5,
}


def _package(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else '__init__'


def _imports(path: str) -> list[tuple[int, str]]:
    """The ``seg`` modules a file imports (relative imports resolved), with their lines."""
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)  # ['seg', 'models', 'heads', 'attn_head']
    here = rel[:-1] if rel[-1] != '__init__' else rel[:-1]
    tree = ast.parse(open(path).read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split('.')[0] == 'seg']
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)]
                found.append((node.lineno, '.'.join(base + ([node.module] if node.module else []))))
            elif node.module and node.module.split('.')[0] == 'seg':
                found.append((node.lineno, node.module))
    return found


FILES = sorted(os.path.relpath(os.path.join(d, f), ROOT) for d, _, fs in os.walk(os.path.join(ROOT, 'seg'))
               for f in fs if f.endswith('.py'))


@pytest.mark.parametrize('path', FILES)
def test_imports_go_down(path):
    parts = path[:-3].split(os.sep)  # seg/<package>/... or seg/<module>
    package = parts[1]
    own = LAYERS[package]
    for line, module in _imports(os.path.join(ROOT, path)):
        target = _package(module)
        if target == package:
            continue
        if path == os.path.join('seg', '__init__.py') and module == 'seg.apis':
            continue  # the package's facade: seg.create_model / seg.list_models, imported on first use
        assert target in LAYERS, f'{path}:{line} imports {module}, a package of no layer'
        assert LAYERS[target] < own or (target in ('registry', '__init__') and own > 0), \
            f'{path}:{line} imports {module}: layer {target} ({LAYERS[target]}) is not below {package} ({own})'


def test_tests_and_tools_import_no_tool_file():
    for folder in ('tests', 'tools'):
        for name in os.listdir(os.path.join(ROOT, folder)):
            if name.endswith('.py') and name != 'test_layers.py':
                text = open(os.path.join(ROOT, folder, name)).read()
                assert 'spec_from_file_location' not in text and 'from tools' not in text, f'{folder}/{name}'


def test_tools_are_thin():
    for name in os.listdir(os.path.join(ROOT, 'tools')):
        if name.endswith('.py'):
            lines = open(os.path.join(ROOT, 'tools', name)).read().splitlines()
            assert len(lines) <= 150, f'tools/{name} has {len(lines)} lines'
