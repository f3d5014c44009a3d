"""Leaf layer types. Importing this package registers every family in REGISTRY."""
from netspec.layers import act, attention, conv, learned, linear, merge, norm, pool, reshape  # noqa: F401  (registration)
from netspec.layers.registry import REGISTRY, Layer, Shape

__all__ = ["REGISTRY", "Layer", "Shape"]
