"""Structural constructs. Importing this package registers every construct in CONSTRUCTS."""
from netspec.constructs import branches, dense, gate, graph, partition, residual, sequence  # noqa: F401  (registration)
from netspec.constructs.registry import CONSTRUCTS, Chain, Construct

__all__ = ["CONSTRUCTS", "Chain", "Construct"]
