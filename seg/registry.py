"""Registries of `seg`: children of mmengine's root registries under the scope ``seg``.

Every registry lists its valid names when asked for an unknown one, and knows where its
members live (``locations``), so a config never fails with "not registered" only because
a module was not imported yet.
"""
from __future__ import annotations

from typing import Any

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry


class SegRegistry(Registry):
    """A registry whose failed look-up is an error listing the valid names."""

    def _find(self, key: str) -> Any:
        return super().get(key)

    def __contains__(self, key: str) -> bool:
        return self._find(key) is not None

    def get(self, key: str) -> Any:
        obj = self._find(key)
        if obj is None and isinstance(key, str):
            self.import_from_location()
            valid = sorted(self.valid_names())
            raise ValueError(
                f"unknown {self.name} type {key!r}; valid types are: {', '.join(valid)}")
        return obj

    def valid_names(self) -> list[str]:
        """Names buildable from this registry (its own modules and its parents')."""
        self.import_from_location()
        names = set(self.module_dict)
        parent = self.parent
        while parent is not None:
            names.update(parent.module_dict)
            parent = parent.parent
        return sorted(names)


MODELS = SegRegistry('model', parent=MMENGINE_MODELS, scope='seg',
                     locations=['seg.models', 'seg.models.data_preprocessor'])
DATASETS = SegRegistry('dataset', parent=MMENGINE_DATASETS, scope='seg', locations=['seg.datasets'])
TRANSFORMS = SegRegistry('transform', parent=MMENGINE_TRANSFORMS, scope='seg',
                         locations=['seg.datasets.transforms'])
METRICS = SegRegistry('metric', parent=MMENGINE_METRICS, scope='seg', locations=['seg.evaluation'])
OPTIM_WRAPPERS = SegRegistry('optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='seg',
                             locations=['seg.engine'])
HOOKS = SegRegistry('hook', parent=MMENGINE_HOOKS, scope='seg', locations=['seg.engine'])
ATTENTION = SegRegistry('attention', scope='seg', locations=['seg.models.attention'])

# Children of mmengine's other registries, so that building under the 'seg' scope finds mmengine's
# optimizers, schedulers, loops, visualizers... through the parent without a fallback warning.
from mmengine import registry as _mm  # noqa: E402

_LOCATIONS = {'DATA_SAMPLERS': ['seg.datasets'], 'LOOPS': ['seg.engine'], 'RUNNERS': ['seg.engine'],
              'FUNCTIONS': ['seg.datasets']}
for _name in ('DATA_SAMPLERS', 'EVALUATOR', 'FUNCTIONS', 'LOG_PROCESSORS', 'LOOPS', 'MODEL_WRAPPERS',
              'OPTIM_WRAPPER_CONSTRUCTORS', 'OPTIMIZERS', 'PARAM_SCHEDULERS', 'RUNNERS', 'VISBACKENDS',
              'VISUALIZERS', 'WEIGHT_INITIALIZERS', 'RUNNER_CONSTRUCTORS', 'INFERENCERS', 'TASK_UTILS'):
    _parent = getattr(_mm, _name)
    globals()[_name] = SegRegistry(_parent.name, parent=_parent, scope='seg', locations=_LOCATIONS.get(_name, []))


def registries() -> list[SegRegistry]:
    """Every registry of ``seg``."""
    return [value for value in globals().values() if isinstance(value, SegRegistry)]


def import_registered_modules() -> None:
    """Import every module that registers something, from the locations the registries name."""
    for registry in registries():
        registry.import_from_location()


def registered_types() -> frozenset[str]:
    """Every name a config's ``type`` may take: what ``seg``'s registries and the mmengine registries they
    inherit from (optimizers, schedulers, hooks, ...) hold, after importing every module that registers.

    A config read from a file somebody handed over may name these and nothing else
    (:func:`seg.engine.config_data.check_stored_config`): mmengine's look-up of any other name imports
    modules and returns arbitrary callables.
    """
    import importlib

    importlib.import_module('mmengine.runner')  # registers mmengine's optimizers, schedulers, hooks, loops
    names: set[str] = set()
    for registry in registries():
        names.update(registry.valid_names())
    return frozenset(names)
