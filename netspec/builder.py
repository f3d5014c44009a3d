"""Analysis -> torch.nn.Module, and the meta-device cross-check of the analysis.

The only stage that imports torch. Every leaf module comes from its layer type's
`build(input_shape)`; every construct's wiring from its construct's `build`
(netspec.constructs), a *step* `step(owner, x)` that calls the owner's children by
name, as a hand-written `forward` calls `self.conv1(x)` (so `model.fc = nn.Linear(...)`
takes effect, and `load_state_dict(assign=True)` too). A construct that is a module of
its own is an `nn.Sequential` when it is a plain chain, else a `Net` running its step;
a `flat` construct registers its children on the enclosing module and runs there. A
layer with a `bare_parameter` registers that tensor on the enclosing module under the
layer's own name (ConvNeXt's `features.1.0.layer_scale`); a layer that `owns_tensors` registers
its module's tensors and children there under their own names (Swin's `attn.relative_position_index`
beside `attn.qkv`). state_dict keys are the
analysed paths; `build_analysis` checks that the module tree it made is exactly the
analysed one. Wiring is plain Python over modules, which torch.compile (fullgraph) and
torch.export trace without graph breaks.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from netspec.analysis import Analysis, Module
from netspec.ir import Leaf


class Net(nn.Module):
    """The module of a construct (residual, concat, ...): its children, and those of the
    flat constructs inside it, are registered on it; `_run` wires them. Each construct
    builds a subclass named by its title (`Residual`, `Gate`), as print(model) shows."""

    def __init__(self):
        super().__init__()
        self._run = None

    def forward(self, x):
        return self._run(self, x)


_NETS: dict[str, type[Net]] = {}


def _net_class(title: str) -> type[Net]:
    if title not in _NETS:
        _NETS[title] = type(title, (Net,), {"__module__": __name__, "__doc__": f"A netspec {title} construct."})
    return _NETS[title]


class Container(nn.Module):
    """A module that only holds others: what a dotted name (`inner_blocks.0.0`) registers
    its module in, as a reference's nn.ModuleList holds its blocks."""


def lookup(owner, name: str):
    """The owner's child at a (dotted) name, looked up at call time."""
    if "." not in name:
        return getattr(owner, name)
    for part in name.split("."):
        owner = getattr(owner, part)
    return owner


class Call:
    """Run the owner's child module `name` (looked up at call time, like self.conv1)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __call__(self, owner, x):
        return getattr(owner, self.name)(x)

    def module(self, owner):
        return lookup(owner, self.name)


class CallPath(Call):
    """Call for a dotted name: the child inside containers."""

    def __call__(self, owner, x):
        return lookup(owner, self.name)(x)


class CallSpread(Call):
    """Run a child that takes several tensors (a merge) on the list a graph node gathered."""

    def __call__(self, owner, xs):
        return lookup(owner, self.name)(*xs)


def _call(name: str) -> Call:
    return CallPath(name) if "." in name else Call(name)


class Bare:
    """A layer whose one tensor is the owner's parameter `name` (no module of its own)."""

    __slots__ = ("name", "functional")

    def __init__(self, name: str, functional):
        self.name, self.functional = name, functional

    def __call__(self, owner, x):
        return self.functional(x, lookup(owner, self.name))


class Owned:
    """A layer whose tensors are its owner's (`Layer.owns_tensors`): run there (the owner's
    container `host` for a dotted name)."""

    __slots__ = ("host", "functional")

    def __init__(self, host: str | None, functional):
        self.host, self.functional = host, functional

    def __call__(self, owner, x):
        return self.functional(x, lookup(owner, self.host) if self.host else owner)


class _Builder:
    """The builder's face towards constructs (their `build` sees it as `b`)."""

    def __init__(self, inplace: bool):
        self.inplace = inplace

    def runs_inplace(self, m: Module) -> bool:
        """The analysis' in-place decision for m (netspec.analysis._Planner), unless turned off."""
        return self.inplace and m.inplace

    def chain(self, modules: list[Module], owner: nn.Module) -> list:
        """Steps for modules applied one after another."""
        return [self.step(m, owner) for m in modules]

    def step(self, m: Module, owner: nn.Module):
        """Build m, register what it registers on `owner`, and return the step that runs it there."""
        node = m.node
        if isinstance(node, Leaf) and node.layer.bare_parameter:
            module = self.leaf(m)
            weight = module.weight
            del module.weight           # the owner holds it; a stale copy would survive assign=True
            _register(owner, node, weight)
            return Bare(node.name, module.functional)
        if isinstance(node, Leaf) and node.layer.owns_tensors:
            module = self.leaf(m)
            _move_into(_host(owner, node), module)
            return Owned(node.name.rsplit(".", 1)[0] if "." in node.name else None, module.functional)
        if isinstance(node, Leaf):
            _register(owner, node, self.leaf(m))
            return CallSpread(node.name) if node.layer.takes_several() else _call(node.name)
        if node.flat:
            return node.construct.build(m, self, owner)
        _register(owner, node, self.module(m))
        return _call(node.name)

    def leaf(self, m: Module) -> nn.Module:
        layer = m.node.layer
        module = layer.build(m.input)
        if layer.frozen:
            module.requires_grad_(False)
        if self.runs_inplace(m):
            module.inplace = True
        return module

    def module(self, m: Module) -> nn.Module:
        """The module of a non-flat construct: nn.Sequential for a plain chain, else a Net."""
        node = m.node
        if node.kind == "sequence" and all(_plain(c) for c in m.slots["body"]):
            seq = nn.Sequential()
            self.chain(m.slots["body"], seq)  # registers the children; Sequential runs them
            return seq
        net = _net_class(node.construct.title)()
        net._run = node.construct.build(m, self, net)
        return net

    # -- for constructs that run a chain's children one by one (a graph reading them) ------
    def container(self, m: Module, children: list[Module]) -> nn.Module:
        """An empty module for the chain m (children to be added with `step`), of the class
        `module` would make."""
        if all(_plain(c) for c in children):
            return nn.Sequential()
        return _net_class(m.node.construct.title)()

    @staticmethod
    def step_for(name: str) -> Call:
        """The step that runs the owner's child `name` (dotted or not)."""
        return _call(name)

    def attach(self, owner: nn.Module, m: Module, module: nn.Module, steps: list) -> None:
        """Register a filled container on `owner`; a Net runs `steps` when called itself."""
        from netspec.constructs import Chain
        if not isinstance(module, nn.Sequential):
            module._run = Chain(steps)
        _register(owner, m.node, module)


def _plain(m: Module) -> bool:
    """A child an nn.Sequential can run: its own registered module, directly under it (a
    dotted name registers a container there, which nn.Sequential would call)."""
    node = m.node
    if "." in (node.name or ""):
        return False
    return node.layer.own_module if isinstance(node, Leaf) else not node.flat


def _host(owner: nn.Module, node) -> nn.Module:
    """The module a (dotted) name registers on: the owner, or its containers, made on first use."""
    for part in node.name.split(".")[:-1]:
        if part not in owner._modules:
            owner.add_module(part, Container())
        owner = owner._modules[part]
    return owner


def _move_into(host: nn.Module, module: nn.Module) -> None:
    """Register a module's own parameters, buffers (persistent or not) and children on `host`,
    leaving the module empty (an `owns_tensors` layer's)."""
    for name, p in module._parameters.items():
        host.register_parameter(name, p)
    for name, b in module._buffers.items():
        host.register_buffer(name, b, persistent=name not in module._non_persistent_buffers_set)
    for name, child in module._modules.items():
        host.add_module(name, child)
    module._parameters.clear(), module._buffers.clear(), module._modules.clear()


def _register(owner: nn.Module, node, value) -> None:
    owner, name = _host(owner, node), node.name.rsplit(".", 1)[-1]
    try:
        if isinstance(value, nn.Parameter):
            owner.register_parameter(name, value)
        else:
            owner.add_module(name, value)
    except KeyError as e:  # resolve refuses every name torch refuses; a newer torch may know more
        from netspec.errors import SpecError
        raise SpecError(f"module name {node.name!r} is refused by this torch version: {e.args[0]}") from None


def build_module(m: Module, inplace: bool = True) -> nn.Module:
    """The torch module of an analysed module; `inplace=False` turns every in-place
    operation off (e.g. for forward hooks that keep activations)."""
    b = _Builder(inplace)
    return b.leaf(m) if isinstance(m.node, Leaf) else b.module(m)


def build_analysis(analysis: Analysis, device=None, inplace: bool = True) -> nn.Module:
    with torch.device(device) if device is not None else nullcontext():
        model = build_module(analysis.tree, inplace=inplace)
    problems = tree_mismatches(analysis, model)
    if problems:  # a bug in netspec, never a user error: resolve's name rule prevents it
        raise AssertionError("built module tree differs from the analysis: " + "; ".join(problems[:5]))
    return model


def expected_tree(analysis: Analysis) -> tuple[dict[str, int], set[str]]:
    """Every module path the analysis registers -> the parameters registered directly on it;
    and the paths of leaf modules (a layer's own module, or a module an `owns_tensors` layer
    registers on its enclosing one, as Swin-v2's `attn.cpb_mlp`), whose insides are theirs."""
    out: dict[str, int] = {}
    leaves: set[str] = set()

    def visit(m: Module, owner: str) -> None:
        node = m.node
        if not (getattr(node, "flat", False) or node is analysis.tree.node):
            for container in _containers(owner, m.path):   # a dotted name's
                out.setdefault(container, 0)
        if isinstance(node, Leaf):
            host = m.path.rsplit(".", 1)[0] if "." in node.name else owner
            if node.layer.bare_parameter:
                out[host] += m.params
            elif node.layer.owns_tensors:
                for name, (kind, params) in node.layer.owned(m.input).items():
                    if kind == "module":
                        path = f"{host}.{name}" if host else name
                        out[path] = params
                        leaves.add(path)
                    elif kind == "parameter":
                        out[host] += params
            else:
                out[m.path] = m.params
                leaves.add(m.path)
            return
        if not node.flat:
            out[m.path] = 0
            owner = m.path
        for child in m.children:
            visit(child, owner)

    visit(analysis.tree, "")
    return out, leaves


def _containers(owner: str, path: str) -> list[str]:
    """The containers a dotted name makes between `owner` and the module at `path`."""
    rest = path[len(owner) + 1:] if owner else path
    parts = rest.split(".")
    return [".".join(filter(None, (owner, *parts[:i]))) for i in range(1, len(parts))]


def _prefixes(path: str) -> set[str]:
    parts = path.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def tree_mismatches(analysis: Analysis, model: nn.Module) -> list[str]:
    """Where the built module tree differs from the analysed one (paths, direct parameters;
    a leaf's torch module may have children of its own, as nn.MultiheadAttention's out_proj:
    they count in the leaf)."""
    expected, leaves = expected_tree(analysis)
    built = {}
    for path, module in model.named_modules(remove_duplicate=False):
        if _prefixes(path) & leaves:   # inside a leaf
            continue
        built[path] = sum(p.numel() for p in module.parameters(recurse=path in leaves))
    problems = [f"{path or '<root>'}: built {built.get(path)}, analysed {expected.get(path)}"
                for path in [*expected, *(p for p in built if p not in expected)] if built.get(path) != expected.get(path)]
    return problems


def cross_check(analysis: Analysis) -> list[str]:
    """Build on the meta device (no memory) and compare with the static analysis:
    parameter count (sum of numel), buffers (elements and bytes) and the forward output shape."""
    model = build_analysis(analysis, "meta").eval()
    problems = []
    numel = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if numel != analysis.params:
        problems.append(f"built module has {numel:,} parameters, analysis says {analysis.params:,}")
    if trainable != analysis.trainable_params:
        problems.append(f"built module has {trainable:,} trainable parameters, analysis says {analysis.trainable_params:,}")
    buffers = [(b.numel(), b.numel() * b.element_size()) for b in model.buffers()]
    if (sum(n for n, _ in buffers), sum(b for _, b in buffers)) != (analysis.buffers, analysis.buffer_bytes):
        problems.append(f"built module has {sum(n for n, _ in buffers):,} buffer elements ({sum(b for _, b in buffers):,} "
                        f"bytes), analysis says {analysis.buffers:,} ({analysis.buffer_bytes:,} bytes)")
    with torch.no_grad():
        out = output_form(model(torch.empty(2, *analysis.input, device="meta")))
    if out != analysis.output:
        problems.append(f"built module outputs {out}, analysis says {analysis.output}")
    return problems


def output_form(out):
    """A model's output as the analysis writes it (netspec.ir.form): each tensor's sample
    shape, in the dicts and lists it comes in."""
    if isinstance(out, dict):
        return {k: output_form(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [output_form(v) for v in out]
    return list(out.shape[1:])
