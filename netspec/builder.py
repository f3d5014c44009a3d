"""Analysis -> torch.nn.Module, and the meta-device cross-check of the analysis.

The only stage that imports torch. Every leaf module comes from its layer type's
`build(input_shape)`; the containers below hold their children as named
submodules, so state_dict keys are the spec's module paths (`layer1.0.conv1.weight`).
Containers keep their wiring in plain tuples of modules, which torch.compile
(fullgraph) and torch.export trace without graph breaks.
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext

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
    """post(body(x) + shortcut(x)); body and post layers are direct children.
    `add_inplace`: add the shortcut into the body's output (torchvision's `out += identity`),
    set by the builder only where that output is a fresh tensor nobody else reads."""

    def __init__(self, body: list[tuple[str, nn.Module]], shortcut: tuple[str, nn.Module] | None,
                 post: list[tuple[str, nn.Module]], add_inplace: bool = False):
        super().__init__()
        self._body = _adopt(self, body)
        self._shortcut = _adopt(self, [shortcut] if shortcut else [])
        self._post = _adopt(self, post)
        self.add_inplace = add_inplace

    def forward(self, x):
        y = _chain(self._body, x)
        s = self._shortcut[0](x) if self._shortcut else x
        # same dtype only: under autocast an in-place add would round an fp32 shortcut to bf16
        y = y.add_(s) if self.add_inplace and y.dtype == s.dtype else y + s
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


# -- in-place execution ----------------------------------------------------------------------
# torchvision runs ReLUs in place and adds residuals in place (`out += identity`), which saves
# an allocation and a memory pass per activation (about 3% of a ResNeXt-50 training step on
# CPU). netspec decides it from the graph instead of asking the spec author: a module may
# overwrite its input only if that input is a fresh tensor (made by the previous module, read
# by no other module and not kept by the previous module's backward). A container's input is
# shared (a residual's body and shortcut, concat branches, a gate's body and product) or the
# caller's tensor, so the first module inside one never runs in place.

def _fresh_output(m: Module) -> bool:
    """Is m's output a new tensor that m's backward does not read?"""
    node = m.node
    if isinstance(node, Leaf):
        return node.layer.fresh_output
    if isinstance(node, Residual):
        return _fresh_output(m.children[-1]) if node.post else True  # the sum
    if isinstance(node, Seq):
        return bool(m.children) and _fresh_output(m.children[-1])
    return True  # concat, dense: torch.cat; gate: x * g


def _build_chain(modules: list[Module], first_fresh: bool, inplace: bool) -> list[tuple[str, nn.Module]]:
    """Build modules applied one after another; the first one's input is fresh iff first_fresh."""
    built, fresh = [], first_fresh
    for m in modules:
        built.append((m.node.name, build_module(m, fresh, inplace)))
        fresh = _fresh_output(m)
    return built


def build_module(m: Module, input_fresh: bool = False, inplace: bool = True) -> nn.Module:
    """The torch module of an analysed module. `input_fresh`: its input may be overwritten
    in place; `inplace=False` turns every in-place operation off (e.g. for forward hooks
    that keep activations)."""
    node = m.node
    if isinstance(node, Leaf):
        module = node.layer.build(m.input)
        if node.layer.frozen:
            module.requires_grad_(False)
        if inplace and input_fresh and node.layer.runs_inplace:
            module.inplace = True
        return module
    if isinstance(node, Seq):
        return nn.Sequential(OrderedDict(_build_chain(m.children, input_fresh, inplace)))
    if isinstance(node, Residual):
        n_body = len(node.body)
        body = _build_chain(m.children[:n_body], False, inplace)
        post = _build_chain(m.children[n_body:], True, inplace)
        shortcut = (m.shortcut.node.name, build_module(m.shortcut, False, inplace)) if m.shortcut else None
        add_inplace = inplace and n_body > 0 and _fresh_output(m.children[n_body - 1])
        return ResidualBlock(body, shortcut, post, add_inplace)
    if isinstance(node, Concat):
        return ConcatBranches([(c.node.name, build_module(c, False, inplace)) for c in m.children])
    if isinstance(node, Dense):  # each layer's input is a new torch.cat that only it reads
        return DenseBlock([(c.node.name, build_module(c, True, inplace)) for c in m.children])
    if isinstance(node, Gate):
        return GateBlock(_build_chain(m.children, False, inplace))
    raise TypeError(f"unknown IR node {type(node).__name__}")


def build_analysis(analysis: Analysis, device=None, inplace: bool = True) -> nn.Module:
    with torch.device(device) if device is not None else nullcontext():
        return build_module(analysis.tree, inplace=inplace)


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
