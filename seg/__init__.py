"""seg: semantic segmentation with interchangeable attention heads.

``seg.create_model(name, backbone=..., num_classes=..., pretrained=...)`` and ``seg.list_models()``
are the one-line entry points (:mod:`seg.apis.factory`); everything else is under ``seg.apis``.
"""

__version__ = '0.1.0'
__all__ = ['create_model', 'list_models']


def __getattr__(name: str):
    if name in __all__:  # imported on first use: ``import seg`` stays light
        from seg.apis import factory

        return getattr(factory, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
