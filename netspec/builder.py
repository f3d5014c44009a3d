"""Analysis -> torch.nn.Module, and the meta-device cross-check of the analysis.

The only stage that imports torch. Every leaf module comes from its layer type's
`build(input_shape)`; the containers below hold their children as named
submodules, so state_dict keys are the spec's module paths (`layer1.0.conv1.weight`).
Containers keep their wiring in plain tuples of modules, which torch.compile
(fullgraph) and torch.export trace without graph breaks.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from netspec.analysis import Analysis, Module
from netspec.ir import Concat, Dense, Gate, Leaf, Residual, Seq


def _adopt(parent: nn.Module, children: list[tuple[str, nn.Module]]) -> tuple[nn.Module, ...]:
    """Register named children on `parent`; return them as a tuple for forward()
    (a tuple attribute is not registered a second time)."""
    for name, module in children:
        parent.add_module(name, module)
    return tuple(module for _, module in children)


def _chain(layers: tuple[nn.Module, ...], x):
    for layer in layers:
        x = layer(x)
    return x


class ResidualBlock(nn.Module):
    """post(body(x) + shortcut(x)); body and post layers are direct children."""

    def __init__(self, body: list[tuple[str, nn.Module]], shortcut: tuple[str, nn.Module] | None,
                 post: list[tuple[str, nn.Module]]):
        super().__init__()
        self._body = _adopt(self, body)
        self._shortcut = _adopt(self, [shortcut] if shortcut else [])
        self._post = _adopt(self, post)

    def forward(self, x):
        y = _chain(self._body, x)
        y = y + (self._shortcut[0](x) if self._shortcut else x)
        return _chain(self._post, y)


class ConcatBranches(nn.Module):
    """Branches on one input, concatenated along channels (dim 1)."""

    def __init__(self, branches: list[tuple[str, nn.Module]]):
        super().__init__()
        self._branches = _adopt(self, branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self._branches], 1)


class DenseBlock(nn.Module):
    """Layer i sees cat(input, out_0, ..., out_{i-1}); returns cat of all of them."""

    def __init__(self, layers: list[tuple[str, nn.Module]]):
        super().__init__()
        self._layers = _adopt(self, layers)

    def forward(self, x):
        features = [x]
        for layer in self._layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class GateBlock(nn.Module):
    """x * gate(x): squeeze-excitation; the gate layers are direct children."""

    def __init__(self, layers: list[tuple[str, nn.Module]]):
        super().__init__()
        self._layers = _adopt(self, layers)

    def forward(self, x):
        return x * _chain(self._layers, x)


def build_module(m: Module) -> nn.Module:
    node = m.node
    if isinstance(node, Leaf):
        module = node.layer.build(m.input)
        if node.layer.frozen:
            module.requires_grad_(False)
        return module
    children = [(c.node.name, build_module(c)) for c in m.children]
    if isinstance(node, Seq):
        return nn.Sequential(OrderedDict(children))
    if isinstance(node, Residual):
        n_body = len(node.body)
        shortcut = (m.shortcut.node.name, build_module(m.shortcut)) if m.shortcut else None
        return ResidualBlock(children[:n_body], shortcut, children[n_body:])
    if isinstance(node, Concat):
        return ConcatBranches(children)
    if isinstance(node, Dense):
        return DenseBlock(children)
    if isinstance(node, Gate):
        return GateBlock(children)
    raise TypeError(f"unknown IR node {type(node).__name__}")


def build_analysis(analysis: Analysis, device=None) -> nn.Module:
    if device is None:
        return build_module(analysis.tree)
    with torch.device(device):
        return build_module(analysis.tree)


def cross_check(analysis: Analysis) -> list[str]:
    """Build on the meta device (no memory) and compare with the static analysis:
    parameter count (sum of numel) and the forward output shape."""
    model = build_analysis(analysis, "meta").eval()
    problems = []
    numel = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if numel != analysis.params:
        problems.append(f"built module has {numel:,} parameters, analysis says {analysis.params:,}")
    if trainable != analysis.trainable_params:
        problems.append(f"built module has {trainable:,} trainable parameters, analysis says {analysis.trainable_params:,}")
    with torch.no_grad():
        out = model(torch.empty(2, *analysis.input, device="meta"))
    if list(out.shape[1:]) != analysis.output:
        problems.append(f"built module outputs {list(out.shape[1:])}, analysis says {analysis.output}")
    return problems
