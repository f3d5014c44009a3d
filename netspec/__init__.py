"""netspec: neural-network architectures as data.

    spec = netspec.load("specs/resnext50.yaml")      # validated Spec (torch-free)
    report = netspec.analyze(spec)                     # .output .params .macs .layers (torch-free)
    model = netspec.build(spec)                        # torch.nn.Module

The pipeline runs one way: load -> validate -> resolve -> analyze -> build.
Only `build` imports torch.
"""
from __future__ import annotations

__version__ = "0.1.0"


def load(spec, overrides=()):
    """A path (YAML or JSON), a dict, or a Spec -> a validated `Spec`."""
    from netspec.document import load_spec
    return load_spec(spec, overrides)


def resolve(spec, input=None, overrides=()):
    """-> the resolved `Graph` (blocks, repeats and expressions expanded); print() it."""
    from netspec.resolver import resolve as _resolve
    spec = load(spec, overrides)
    return _resolve(spec, tuple(input) if input else None)


def analyze(spec, input=None, overrides=()):
    """-> `Analysis` with .output, .params, .trainable_params, .macs and .layers,
    computed from shapes alone (no tensors, no torch)."""
    from netspec.analysis import analyze_graph
    spec = load(spec, overrides)
    return analyze_graph(resolve(spec, input), spec.source, spec)


def build(spec, input=None, overrides=(), device=None, inplace=True):
    """-> the `torch.nn.Module` the spec describes (input is batch-first). ReLUs and
    residual adds run in place where the graph shows it is safe, as torchvision's do;
    `inplace=False` turns that off (for forward hooks that keep activations)."""
    from netspec.builder import build_analysis
    analysis = spec if hasattr(spec, "tree") else analyze(spec, input, overrides)
    return build_analysis(analysis, device, inplace)


__all__ = ["load", "resolve", "analyze", "build", "__version__"]
