"""Random valid specs and random edits of specs, for differential and mutation fuzzing.

`random_spec(r)` builds a spec while tracking the shape, so every layer is legal: stacks
of every layer type, token specs (patch embedding, attention whole or in parts, token groups),
windows and grids of maps (partition, shifted, channels first or last) with attention in parts,
blocks with arguments, repeats with overrides, grouped and dilated
convs, residuals with each shortcut kind, concat, dense, gate, sequence, when, vars and
expressions, graphs (skips, merges, reduces, resize/pad/crop like another node, reads of a
chain's children, blocks of several inputs, records, dotted names, `order`, `keys: index`,
`when` nodes; whole models that return records), random input sizes. `r` is a `Draw`: a `random.Random` (bench/fuzz.py) or
hypothesis data (tests). `differential(spec)` compares the static analysis with the
module built on the meta device; `inplace_differential(spec)` the in-place build with the
out-of-place one. `mutate(r, data)` is one random edit of a document.
"""
from __future__ import annotations

import copy
import json
import random
from collections import Counter
from math import floor, prod

ACTS = ["relu", "relu6", "sigmoid", "tanh", "gelu", "silu", "hardswish", "hardsigmoid", "identity",
        {"leaky_relu": 0.2}, {"gelu": "tanh"}, "dropout"]


class Draw:
    """The few random choices the generator makes; subclass for hypothesis."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, options):
        return options[self.int(0, len(options) - 1)]

    def chance(self, p: float) -> bool:
        return self.int(0, 999) < p * 1000


class Gen:
    def __init__(self, r: Draw):
        self.r = r
        self.used: Counter = Counter()
        self.blocks: dict = {}
        self.names = 0  # for unique module names

    # -- leaves ---------------------------------------------------------------------
    def conv(self, c: int, h: int, w: int, out: int | None = None, stride: int | None = None) -> tuple[dict, tuple]:
        r = self.r
        divisors = [g for g in range(1, c + 1) if c % g == 0]
        groups = r.choice(divisors) if out is None else 1
        out = out if out is not None else groups * r.int(1, max(1, 8 // groups + 1))
        k = r.int(1, min(5, h, w) if min(h, w) >= 1 else 1)
        stride = stride if stride is not None else r.choice([1, 1, 2])
        dilation = r.choice([1, 1, 2]) if min(h, w) >= 2 * k else 1
        span = dilation * (k - 1) + 1
        fields = {"out": out, "k": k, "groups": groups}
        if stride != 1:
            fields["stride"] = stride
        if dilation != 1:
            fields["dilation"] = dilation
        if stride == 1 and r.chance(0.3) and span <= min(h, w):
            fields["padding"] = "same"
            oh, ow = h, w
        else:
            p = r.int(0, k // 2)
            if p:
                fields["padding"] = p
            if h + 2 * p < span or w + 2 * p < span:
                fields.pop("padding", None), fields.pop("dilation", None)
                fields["k"], span, p = 1, 1, 0
            oh, ow = (h + 2 * p - span) // stride + 1, (w + 2 * p - span) // stride + 1
        if r.chance(0.3):
            fields["bias"] = False
        self.used["conv"] += 1
        if groups > 1:
            self.used["grouped conv"] += 1
        return {"conv": fields}, (out, oh, ow)

    def pool(self, shape) -> tuple[dict, tuple]:
        r = self.r
        c, h, w = shape
        kind = r.choice(["maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool", "global"])
        self.used[kind] += 1
        if kind == "global":
            return {r.choice(["maxpool", "avgpool"]): "global"}, (c, 1, 1)
        if kind.startswith("adaptive"):
            size = [r.int(1, h), r.int(1, w)]
            return {kind: {"size": size}}, (c, *size)
        k = r.int(1, min(3, h, w))
        stride = r.int(1, k)
        p = r.int(0, k // 2)
        ceil = r.chance(0.3)

        def out(n):
            num = n + 2 * p - k
            o = (-(-num // stride) if ceil else num // stride) + 1
            return o - 1 if ceil and (o - 1) * stride >= n + p else o
        fields = {"k": k, "stride": stride, "padding": p, "ceil_mode": ceil}
        if kind == "avgpool" and p and r.chance(0.3):   # PoolFormer's: the padding not counted
            fields["count_include_pad"] = False
            self.used["avgpool without padding counted"] += 1
        return {kind: fields}, (c, out(h), out(w))

    def zoo(self, shape) -> tuple[dict, tuple]:
        """One of the CNN-zoo leaf layers on [C, H, W], back on a [C, H, W] map."""
        r = self.r
        c, h, w = shape
        kind = r.choice(["permute", "reshape", "layernorm", "groupnorm", "channel_shuffle",
                         "stochastic_depth", "conv_transpose", "upsample", "scale", "add", "normalize", "frozen_bn", "space_to_depth"])
        self.used[kind] += 1
        divisor = r.choice([g for g in range(1, c + 1) if c % g == 0])
        if kind == "permute":  # to another order (maybe a layer over its last dim) and back
            order = r.choice([[1, 2, 0], [2, 0, 1], [0, 2, 1], [1, 0, 2], [2, 1, 0], [0, 1, 2]])
            moved = [shape[d] for d in order]
            body = [{"permute": order}]
            if r.chance(0.5):
                body.append({"layernorm": {"eps": 1e-6}})
            elif r.chance(0.5):
                moved[2] = r.int(1, 8)
                body.append({"linear": moved[2]})
            body.append({"permute": [order.index(d) for d in range(3)]})
            return {"sequence": {"body": body}}, tuple(moved[order.index(d)] for d in range(3))
        if kind == "reshape":  # flatten a range of dims, reshape to [C, H, W] or [C*H, W, 1]
            start, end = r.choice([(0, -1), (1, 2), (-2, -1), (0, 1), (0, 0), (-3, 1)])
            target = r.choice([[c, h, w], [c * h, w, 1], [c, h * w, 1]])
            if r.chance(0.6):
                target[r.int(0, 2)] = -1
            out = tuple(c * h * w // -prod(target) if d == -1 else d for d in target)  # prod has the -1
            return {"sequence": {"body": [{"flatten": {"start": start, "end": end}}, {"reshape": target}]}}, out
        if kind == "layernorm":
            fields = {"over": r.choice(["channels", "last"]), "eps": r.choice([1e-5, 1e-6])}
            if r.chance(0.3):
                fields[r.choice(["elementwise_affine", "bias"])] = False
            return {"layernorm": fields}, shape
        if kind == "groupnorm":  # a group of one value is refused (it normalizes to 0)
            groups = divisor if c // divisor * h * w > 1 else 1
            if c * h * w == 1:
                return "identity", shape
            return {"groupnorm": {"groups": groups, "affine": r.chance(0.7)}}, shape
        if kind == "channel_shuffle":
            return {"channel_shuffle": divisor}, shape
        if kind in ("scale", "add"):  # a learned tensor, registered under the layer's own name
            fields = {"per": r.choice(["channels", "last", "sample"]), "init": r.choice([0.5, 1e-6, 2.0])}
            if kind == "add" and r.chance(0.5):
                fields["std"] = 0.02
            if r.chance(0.3):   # kept as a vector, viewed when applied (SSD's scale_weight)
                fields["vector"] = True
            return {kind: fields}, shape
        if kind == "normalize":
            return {"normalize": {"dim": r.choice([0, -1, 1]), "p": r.choice([2.0, 1.0])}}, shape
        if kind == "frozen_bn":
            return {"frozen_bn": {"eps": r.choice([1e-5, 1e-3])}}, shape
        if kind == "space_to_depth":   # Swin's patch merging, on a channels-last view of the map
            k = r.int(1, 3)
            out = (k * k * c, -(-h // k), -(-w // k))   # H and W padded up to multiples of k
            return {"sequence": {"body": [{"permute": [1, 2, 0]}, {"space_to_depth": k}, {"permute": [2, 0, 1]}]}}, out
        if kind == "stochastic_depth":
            return {"stochastic_depth": {"p": r.choice([0.0, 0.2, 0.5, 1.0]), "mode": r.choice(["row", "batch"])}}, shape
        if kind == "conv_transpose":
            k, stride, dilation = r.int(1, 3), r.choice([1, 2]) if max(h, w) <= 10 else 1, r.choice([1, 1, 2])
            pad = r.int(0, min(h, w, k) - 1) if r.chance(0.5) else 0
            extra = r.int(0, max(stride, dilation) - 1)
            out = divisor * r.int(1, 3)
            size = [(n - 1) * stride - 2 * pad + dilation * (k - 1) + extra + 1 for n in (h, w)]
            return {"conv_transpose": {"out": out, "k": k, "stride": stride, "padding": pad, "output_padding": extra,
                                       "dilation": dilation, "groups": divisor, "bias": r.chance(0.5)}}, (out, *size)
        fields = {"mode": r.choice(["nearest", "bilinear", "bicubic"])}
        if fields["mode"] != "nearest" and r.chance(0.5):
            fields["align_corners"] = r.chance(0.5)
        if r.chance(0.4):
            fields["size"] = [r.int(1, 12), r.int(1, 12)]
            return {"upsample": fields}, (c, *fields["size"])
        fields["scale"] = r.choice([2, 1.5, 0.5, [2, 1], [0.7, 1.3]]) if max(h, w) <= 10 else r.choice([0.5, 0.75])
        sh, sw = fields["scale"] if isinstance(fields["scale"], list) else (fields["scale"],) * 2
        oh, ow = floor(h * sh), floor(w * sw)  # torch's rule
        if min(oh, ow) < 1:  # too small to shrink
            fields["scale"], oh, ow = 2, 2 * h, 2 * w
        return {"upsample": fields}, (c, oh, ow)

    def act(self) -> object:
        a = self.r.choice(ACTS)
        self.used[a if isinstance(a, str) else next(iter(a))] += 1
        return a

    # -- items over [C, H, W] -------------------------------------------------------------
    def items(self, shape, depth: int, n: int) -> tuple[list, tuple]:
        out = []
        for _ in range(n):
            item, shape = self.item(shape, depth)
            out.append(item)
        return out, shape

    def item(self, shape, depth: int):
        r = self.r
        kinds = ["conv", "conv", "bn", "act", "pool", "zoo"]
        if depth < 2:
            kinds += ["residual", "concat", "split", "dense", "gate", "sequence", "block", "repeat", "when", "graph",
                      "partition"]
        kind = r.choice(kinds)
        c, h, w = shape
        if kind == "conv":
            return self.conv(c, h, w)
        if kind == "bn":
            self.used["bn"] += 1
            return "bn", shape
        if kind == "act":
            return self.act(), shape
        if kind == "pool":
            return self.pool(shape)
        if kind == "zoo":
            return self.zoo(shape)
        self.used[kind] += 1
        return getattr(self, kind)(shape, depth)

    def keeping(self, shape, depth: int) -> list:
        """Items that keep the spatial size (and may change channels)."""
        c, h, w = shape
        items = []
        for _ in range(self.r.int(1, 3)):
            choice = self.r.choice(["conv", "bn", "act"])
            if choice == "conv":
                k = self.r.choice([1, 3]) if min(h, w) >= 3 else 1
                out = self.r.int(1, 8)
                items.append({"conv": {"out": out, "k": k, "padding": k // 2}})
                c = out
            else:
                items.append("bn" if choice == "bn" else self.act())
        return items, (c, h, w)

    def residual(self, shape, depth):
        c, h, w = shape
        stride = self.r.choice([1, 2])
        out = self.r.choice([c, c, self.r.int(1, 12)])
        first = {"conv": {"out": out, "k": 3, "stride": stride, "padding": 1, "bias": self.r.chance(0.5)}}
        after = (out, (h - 1) // stride + 1, (w - 1) // stride + 1)
        more, _ = self.keeping(after, depth + 1)
        more = [i for i in more if not (isinstance(i, dict) and "conv" in i)]  # keep channels
        body = [first, *more]
        if self.r.chance(0.3):  # a body that starts on the shared input (pre-activation style)
            body.insert(0, self.act())
        kind = self.r.choice(["auto", "identity", "projection"]) if after == shape else self.r.choice(["auto", "projection"])
        self.used[f"shortcut {kind}"] += 1
        fields = {"body": body, "shortcut": kind}
        if kind == "projection":
            fields["shortcut"] = [{"conv": {"out": out, "k": 1, "stride": stride, "bias": False}}, "bn"]
            fields["shortcut_name"] = "downsample"
            if self.r.chance(0.3):
                fields["shortcut_first"] = True
                self.used["shortcut_first"] += 1
        if self.r.chance(0.6):
            fields["post"] = self.act()
        if kind != "identity" and self.r.chance(0.3):  # its own name: flat residuals may sit side by side
            self.names += 1
            fields["shortcut_name"] = f"proj-{self.names}"
        if kind != "identity" and fields.get("shortcut_name", "").startswith("proj-") and self.r.chance(0.5):
            fields["flat"] = True
            self.used["flat residual"] += 1
        return {"residual": fields}, after

    def concat(self, shape, depth):
        c, h, w = shape
        branches, total = {}, 0
        for b in range(self.r.int(2, 3)):
            if self.r.chance(0.3):
                items, out = [{"maxpool": {"k": 3 if min(h, w) >= 3 else 1, "stride": 1, "padding": 1 if min(h, w) >= 3 else 0}}], shape
            else:
                items, out = self.keeping(shape, depth + 1)
            branches[f"branch{b + 1}"] = items
            total += out[0]
        if self.r.chance(0.3):  # Fire/Inception layout: unnamed branches, children on the enclosing module
            self.used["flat concat"] += 1
            return {"concat": {"flat": True, "branches": list(branches.values())}}, (total, h, w)
        return {"concat": {"branches": branches}}, (total, h, w)

    def split(self, shape, depth):
        """Channel split: equal parts (or sizes), an identity or a shape-keeping body per part."""
        c, h, w = shape
        n = self.r.choice([d for d in (1, 2, 3) if c % d == 0])
        fields, total = {}, 0
        sizes = [c // n] * n
        if n > 1 and self.r.chance(0.3) and c > n:
            sizes = [1] * (n - 1) + [c - n + 1]
            fields["sizes"] = sizes
        branches = []
        for size in sizes:
            if self.r.chance(0.3):
                items, out = [], (size, h, w)
            else:
                items, out = self.keeping((size, h, w), depth + 1)
            branches.append(items)
            total += out[0]
        if self.r.chance(0.5):
            self.names += 1
            fields["branches"] = {f"part{self.names}-{i}": b for i, b in enumerate(branches)}
        else:
            fields["branches"] = branches
        if self.r.chance(0.4):
            fields["flat"] = True
            self.used["flat split"] += 1
        return {"split": fields}, (total, h, w)

    def dense(self, shape, depth):
        c, h, w = shape
        n, growth = self.r.int(1, 3), self.r.int(1, 4)
        k = 3 if min(h, w) >= 3 else 1
        body = ["bn", "relu", {"conv": {"out": growth, "k": k, "padding": k // 2, "name": "layer${i + 1}"}}]
        if self.r.chance(0.5):
            body = [{"conv": {"out": growth, "k": k, "padding": k // 2}}]
        if self.r.chance(0.3):
            body.insert(0, self.act())
        return {"dense": {"repeat": n, "body": body}}, (c + n * growth, h, w)

    def gate(self, shape, depth):
        c = shape[0]
        squeeze = max(1, c // 4)
        body = [{"avgpool": "global"}, {"conv": {"out": squeeze, "k": 1, "name": "fc1"}}, "relu",
                {"conv": {"out": c, "k": 1, "name": "fc2"}}, self.r.choice(["sigmoid", "hardsigmoid"])]
        if self.r.chance(0.3):  # a gate body that starts on the gated input itself
            body.insert(0, self.act())
        return {"gate": {"body": body}}, shape

    def when(self, shape, depth):
        """`when:` with a literal or computed condition (vars width = 2), and maybe `else:`."""
        holds, written = self.r.choice([(True, True), (False, False), (True, 1), (False, 0),
                                        (True, "${width - 1}"), (False, "${width - 2}")])
        body, out = self.items(shape, depth + 1, self.r.int(1, 2))
        item = {"when": written, "body": body}
        if not holds:
            out = shape
        if self.r.chance(0.5):
            other, out_other = self.items(shape, depth + 1, self.r.int(1, 2))
            item["else"] = other
            if not holds:
                out = out_other
        return item, out

    def sequence(self, shape, depth):
        items, out = self.items(shape, depth + 1, self.r.int(1, 3))
        self.names += 1
        return {"sequence": {"name": f"seq{self.names}", "body": items}}, out

    def block(self, shape, depth):
        """A call of the spec's parameterised block `unit` (defined once)."""
        self.define_unit()
        c, h, w = shape
        out = self.r.int(1, 8)
        stride = self.r.choice([1, 2])
        args = {"c": out} if stride == 1 else {"c": out, "stride": stride}
        return {"unit": args}, (out * 2, (h - 1) // stride + 1, (w - 1) // stride + 1)

    def repeat(self, shape, depth):
        self.define_unit()
        c, h, w = shape
        out = self.r.int(1, 6)
        n = self.r.int(1, 3)
        item = {"repeat": n, "body": [{"unit": {"c": out}}]}
        oh, ow = h, w
        if self.r.chance(0.5):
            item["overrides"] = {0: {"stride": 2}}
            oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        if self.r.chance(0.5):
            self.names += 1
            item["name"] = f"stage{self.names}"
            self.used["named repeat"] += 1
        return item, (out * 2, oh, ow)

    # -- attention in parts, token groups -------------------------------------------------
    def attention(self, out: int, window: list | None = None) -> list:
        """linear (qkv, maybe with an unused key bias), split_heads, attend (random scale, bias over
        the `window` token grid, cosine, dropout), merge_heads, linear to `out`, on tokens [..., N, C]."""
        r = self.r
        heads, dh = r.int(1, 3), r.int(1, 4)
        qkv = {"out": 3 * heads * dh, "name": "qkv"}
        self.used["attention"] += 1
        if r.chance(0.2):
            qkv["bias_zeroed"] = [heads * dh, 2 * heads * dh]
            self.used["bias_zeroed"] += 1
        fields = {}
        if r.chance(0.3):
            fields["cosine"] = True
        elif r.chance(0.3):
            fields.update(scale=r.choice([0.5, 0.1]), scaled=r.choice(["q", "k"]))
        if window is not None and r.chance(0.6):
            fields["position_bias"] = r.choice(["table", "mlp"])
            if fields["position_bias"] == "mlp":
                fields["mlp"] = r.int(1, 8)
            if r.chance(0.5):
                fields["index"] = "square"
        if r.chance(0.2):
            fields["dropout"] = 0.1
        self.used["attend " + ("+".join(sorted(fields)) or "fused")] += 1
        return [{"linear": qkv}, {"split_heads": {"heads": heads, "parts": 3}}, {"attend": fields}, "merge_heads",
                {"linear": {"out": out, "name": "proj"}}]

    def group_body(self, c: int, window) -> tuple[list, int]:
        """What runs on [G, N, C]: attention (alone, or in a pre-norm residual), an MLP residual, a
        layernorm, a linear to another width."""
        r = self.r
        body, width, flat_taken = [], c, False
        for _ in range(r.int(1, 3)):
            kind = r.choice(["attention", "attention residual", "mlp residual", "layernorm", "linear"])
            self.used[f"group {kind}"] += 1
            if kind == "attention":   # on the partition's own module (Swin's attn) once, then each in a module
                width = r.choice([width, r.int(1, 8)])
                parts = self.attention(width, window)
                body += parts if not any("attend" in str(item) for item in body) else [{"sequence": {"body": parts}}]
            elif kind == "attention residual":
                inner = [{"layernorm": {"name": "norm1"}}, {"sequence": {"name": "attn", "body": self.attention(width, window)}}]
                if r.chance(0.4):
                    inner.append({"stochastic_depth": {"p": r.choice([0.0, 0.3])}})
                flat = r.chance(0.3) and not flat_taken   # a flat one's norm1 and attn are the body's: once
                flat_taken |= flat
                body.append({"residual": {"shortcut": "identity", "body": inner, **({"flat": True} if flat else {})}})
            elif kind == "mlp residual":
                body.append({"residual": {"shortcut": "identity", "body": [
                    "layernorm", {"linear": 2 * width}, self.act(), {"linear": width}]}})
            elif kind == "layernorm":
                body.append("layernorm")
            else:
                width = r.int(1, 8)
                body.append({"linear": width})
        return body, width

    def partition(self, shape, depth):
        """Windows (maybe padded and shifted) or a grid of the map, channels first or (between
        permutes) last, with attention and MLPs on the groups."""
        r = self.r
        c, h, w = shape
        grid = r.chance(0.3)
        if grid:
            size = [r.choice([d for d in range(1, n + 1) if n % d == 0]) for n in (h, w)]
        else:
            size = [r.int(1, min(n, 5)) for n in (h, w)]
        fields = {"size": size[0] if size[0] == size[1] and r.chance(0.5) else size}
        if grid:
            fields["kind"] = "grid"
        elif r.chance(0.5) and max(size) > 1:
            fields["shift"] = [r.int(0, s - 1) for s in size]
        fields["body"], out = self.group_body(c, size)
        self.used["partition " + ("grid" if grid else "shifted" if any(fields.get("shift", [0])) else "window")] += 1
        if r.chance(0.5):
            fields["channels"] = "first"
            return {"partition": fields}, (out, h, w)
        self.used["partition channels last"] += 1
        return {"sequence": {"body": [{"permute": [1, 2, 0]}, {"partition": fields}, {"permute": [2, 0, 1]}]}}, (out, h, w)

    # -- graphs --------------------------------------------------------------------------
    MERGES = ["sum", "product", "difference", "quotient", "mean", "max"]

    def graph(self, shape, depth, outputs: bool = False):
        """A graph over [C, H, W] values: each node reads one or more values above it. With
        `outputs`, it returns a record of some of them (a whole model's graph)."""
        r = self.r
        values = [("input", tuple(shape))]   # (reference, shape) of every value a node may read
        nodes, present = {}, []
        for k in range(r.int(2, 6)):
            node_id = f"n{k}"
            node, out, taps = self.graph_node(values, node_id, depth)
            nodes[node_id] = node
            if out is not None:   # None: left out by its when
                values.append((node_id, out))
                values.extend(taps)
                present.append((node_id, out))
        if not present:
            item, out = self.item(shape, depth + 1)
            nodes["last"] = {"from": "input", **_as_node(item)}
            present.append(("last", out))
        fields = {"nodes": nodes}
        if outputs:
            chosen = r.choice([present, present[-2:], present[-1:]])
            fields["outputs"] = {f"o{i}": ref for i, (ref, _) in enumerate(chosen)}
            out = {f"o{i}": v for i, (_, v) in enumerate(chosen)}
        else:
            fields["outputs"], out = present[-1]
        if r.chance(0.3):
            fields["order"] = r.choice([list(reversed(nodes)), list(nodes)[1:2]])
            self.used["graph order"] += 1
        if r.chance(0.2) and '"flat": true' not in json.dumps(nodes):   # a flat node's children are numbered too
            fields["keys"] = "index"
            self.used["graph keys index"] += 1
        return {"graph": fields}, out

    def graph_node(self, values, node_id, depth):
        """One node: its item, what it reads, its output, and the children other nodes may read."""
        r = self.r
        maps = [(ref, v) for ref, v in values if len(v) == 3]
        ref, shape = maps[-1] if r.chance(0.5) else r.choice(maps)
        c, h, w = shape
        kind = r.choice(["item", "item", "merge", "concat", "like", "reduce", "tap", "fuse", "when"])
        self.used[f"graph {kind}"] += 1
        if kind == "merge":
            same = [ref2 for ref2, v in maps if v == shape or v == (c, 1, 1)]
            if len(same) < 2:
                item, out = self.item(shape, depth + 1)
                return {"from": ref, **_as_node(item)}, out, []
            picks = [ref] + [r.choice(same) for _ in range(r.int(1, 2))]
            op = r.choice(self.MERGES)
            fields = {"op": op, "eps": 0.5} if op == "quotient" and r.chance(0.5) else op
            return {"from": picks, "merge": fields}, shape, []
        if kind == "concat":
            joined = [ref2 for ref2, v in maps if v[1:] == shape[1:]]
            picks = [ref] + [r.choice(joined) for _ in range(r.int(1, 2))]
            total = sum(next(v for ref2, v in maps if ref2 == p)[0] for p in picks)
            return {"from": picks, "merge": {"op": "concat"}}, (total, h, w), []
        if kind == "like":
            other_ref, other = r.choice(maps)
            op = "resize" if (other[1] - h) * (other[2] - w) < 0 or r.chance(0.5) else \
                "pad" if other[1] >= h and other[2] >= w else "crop"
            fields = {"like": other_ref}
            if op == "resize":
                fields["mode"] = r.choice(["nearest", "bilinear"])
            else:
                fields["align"] = r.choice(["center", "start"])
            self.used[op] += 1
            return {"from": ref, op: fields}, (c, other[1], other[2]), []
        if kind == "reduce":
            op = r.choice(["mean", "sum", "max", "norm"])
            dims = r.choice([[1, 2], [0], [-1], [0, 2]])
            out = tuple(1 if d in [x % 3 for x in dims] else n for d, n in enumerate(shape))
            return {"from": ref, "reduce": {"op": op, "dims": dims, "keepdim": True}}, out, []
        if kind == "tap":   # a chain whose named children other nodes read
            body, taps, cur = [], [], shape
            for j in range(r.int(2, 4)):
                item, cur = self.item(cur, 2)
                if isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict) and \
                        next(iter(item)) not in ("repeat", "when") and "name" not in next(iter(item.values())):
                    next(iter(item.values()))["name"] = f"t{j}"
                    taps.append((f"{node_id}.t{j}", cur))
                body.append(item)
            node = {"from": ref, "body": body}
            if r.chance(0.3):
                node["name"] = f"stage.{node_id}"   # a dotted name: containers on the way
                self.used["dotted name"] += 1
            return node, cur, [t for t in taps if len(t[1]) == 3]
        if kind == "fuse":   # a block of two inputs (by name or by position) whose body is a graph
            self.define_fuse()
            other_ref, other = r.choice([(ref2, v) for ref2, v in maps if v[0] == c])
            source = {"b": other_ref, "a": ref} if r.chance(0.5) else [ref, other_ref]
            return {"from": source, "fuse": {"c": c}}, shape, []
        if kind == "when":   # left out when false (nothing reads it then)
            item, out = self.item(shape, depth + 1)
            holds = r.chance(0.5)
            return {"when": holds if r.chance(0.5) else "${width == 2}" if holds else "${width > 2}",
                    "from": ref, **_as_node(item)}, out if holds else None, []
        item, out = self.item(shape, depth + 1)
        return {"from": ref, **_as_node(item)}, out, []

    def define_fuse(self):
        """A block of inputs a and b (the same channels): relu(a) + resize(b like a) * sigmoid(conv(pool(b)))."""
        self.blocks["fuse"] = {
            "args": {"c": "required"}, "inputs": ["a", "b"], "outputs": "out",
            "graph": {"nodes": {
                "ra": {"from": "a", "relu": None},
                "gb": {"from": "b", "body": [{"avgpool": "global"}, {"conv": {"out": "$c", "k": 1}}, "sigmoid"]},
                "up": {"from": "b", "resize": {"like": "a"}},
                "g": {"from": ["up", "gb"], "merge": "product"},
                "out": {"from": ["ra", "g"], "merge": "sum"}}}}

    def define_unit(self):
        self.blocks["unit"] = {
            "args": {"c": "required", "stride": 1},
            "residual": {"body": [{"conv": {"out": "${c * width}", "k": 3, "stride": "$stride", "padding": 1, "bias": False, "name": "conv1"}},
                                  {"bn": {"name": "bn1"}}, "relu",
                                  {"conv": {"out": "${max(c, 1) * width}", "k": 1, "bias": False, "name": "conv2"}}],
                         "shortcut": "auto", "post": "relu"}}


# Every random spec declares `base` and `width`; one without a layer that reads them warns
# that they are never used, and a random graph may hold a node that reaches no output (the
# warnings' own tests are tests/test_newuser.py's and test_graph.py's): a filterwarnings mark
# for the tests that check other things on these specs.
RANDOM_SPEC_WARNINGS = r"ignore:.*(variable '(base|width)' is never used|reaches no output of the graph):netspec.errors.SpecWarning"
# `width` is 2 however it is written: the expression language's functions, conditional and range sums
WIDTH_2 = [2, "${round(log(base + 1, 2))}", "${2 if base > 2 and not base == 5 else 3}",
           "${sum(1 for j in range(base) if j % 2 == 0)}", "${abs(floor(-base / 2)) ** 1}", "${int(ceil(base ** 0.5))}"]


def _as_node(item) -> dict:
    """A chain item written as a graph node's item: a layer name, or its one-key mapping
    (`repeat:`/`when:` items go in a body)."""
    if isinstance(item, str):
        return {item: None}
    if "repeat" in item or "when" in item:
        return {"body": [item]}
    return dict(item)


def random_spec(r: Draw) -> tuple[dict, Counter]:
    g = Gen(r)
    vars_ = {"base": 3, "width": r.choice(WIDTH_2)}
    if r.chance(0.2):
        shape = (r.int(1, 64),)
        layers = []
        for _ in range(r.int(1, 4)):
            layers.append(r.choice([{"linear": {"out": r.int(1, 32), "bias": r.chance(0.5)}}, "bn", g.act()]))
        g.used["vector input"] += 1
        return {"netspec": 1, "name": "fuzz", "input": list(shape), "vars": vars_, "layers": layers}, g.used
    if r.chance(0.15):
        return tokens_spec(g, vars_), g.used
    shape = (r.int(1, 8), r.int(1, 20), r.int(1, 20))
    if r.chance(0.1):   # the whole model is a graph that returns a record
        graph, _ = g.graph(shape, 0, outputs=True)
        g.used["graph model"] += 1
        spec = {"netspec": 1, "name": "fuzz", "input": list(shape), "vars": vars_, "graph": graph["graph"]}
        if g.blocks:
            spec["blocks"] = g.blocks
        return spec, g.used
    layers, out = g.items(shape, 0, r.int(1, 6))
    layers += [r.choice(["flatten", {"avgpool": "global"}])]
    if layers[-1] != "flatten":
        layers.append("flatten")
    if r.chance(0.7):
        layers.append({"linear": {"out": "${width * 5}", "name": "fc"}})
        g.used["expression"] += 1
    spec = {"netspec": 1, "name": "fuzz", "input": list(shape), "vars": vars_, "layers": layers}
    if g.blocks:
        spec["blocks"] = g.blocks
    return spec, g.used


def tokens_spec(g: Gen, vars_: dict) -> dict:
    """Tokens [N, D], from the input or from an image through a patch embedding (conv, flatten,
    permute), through ViT's layers: class token, positional embedding, self-attention (alone or in
    a pre-norm residual, flat or not), linear, layernorm, activations; then one token, or all."""
    r, used = g.r, g.used
    d = r.choice([4, 6, 8, 12])
    if r.chance(0.5):
        p = r.int(1, 4)
        side = p * r.int(1, 4)
        shape, n = [r.int(1, 4), side, side], (side // p) ** 2
        layers = [{"conv": {"out": d, "k": p, "stride": p}}, {"flatten": {"start": 1}}, {"permute": [1, 0]}]
        used["patch embedding"] += 1
    else:
        n = r.int(1, 12)
        shape, layers = [n, d], []
    if r.chance(0.5):
        layers.append({"class_token": {"name": "class_token"}})
        n += 1
    if r.chance(0.5):
        layers.append({"pos_embedding": {"tokens": n, "name": "pos_embedding"} if r.chance(0.5) else {"name": "pos_embedding"}})
    for _ in range(r.int(1, 4)):
        kind = r.choice(["self_attention", "encoder block", "linear", "layernorm", "act", "attention parts",
                         "token partition"])
        used[kind] += 1
        # attention dropout stays 0: the memory model refuses it (tests/test_zoo_vit.py checks its draws)
        attention = {"self_attention": {"heads": r.choice([h for h in range(1, d + 1) if d % h == 0]),
                                        "bias": r.chance(0.7)}}
        if kind == "self_attention":
            layers.append(attention)
        elif kind == "encoder block":
            body = [{"layernorm": {"eps": 1e-6}}, attention, {"dropout": r.choice([0.0, 0.1])}]
            layers.append({"residual": {"body": body, "shortcut": "identity", **({"flat": True} if r.chance(0.5) else {})}})
        elif kind == "attention parts":   # over all tokens: torch's fused kernel without bias or options
            layers.append({"sequence": {"body": g.attention(d)}})
        elif kind == "token partition":   # runs of tokens (padded, shifted, or a grid), attention on each
            size = r.int(1, n)
            fields = {"size": size}
            if r.chance(0.3) and n % size == 0:
                fields["kind"] = "grid"
            elif size > 1 and r.chance(0.5):
                fields["shift"] = r.int(0, size - 1)
            fields["body"], _ = g.group_body(d, [1, size])
            fields["body"].append({"linear": d})
            layers.append({"partition": fields})
        elif kind == "linear":
            d = r.choice([4, 6, 8, 12])
            layers.append({"linear": d})
        elif kind == "layernorm":
            layers.append("layernorm")
        else:
            layers.append(g.act())
    layers.append({"select_token": r.int(-n, n - 1)} if r.chance(0.6) else "flatten")
    layers.append({"linear": {"out": r.int(1, 10)}})
    used["token input"] += 1
    return {"netspec": 1, "name": "fuzz", "input": shape, "vars": vars_, "layers": layers}


def differential(spec: dict) -> list[str]:
    """Static analysis vs the module built on the meta device: per-layer output shapes,
    parameter count, trainable count, MACs vs FlopCounterMode. Returns mismatches."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import netspec
    analysis = netspec.analyze(spec)
    model = netspec.build(analysis, device="meta").eval()
    seen = {}
    modules = dict(model.named_modules())
    # a bare parameter has no module; a graph node that no output depends on never runs
    rows = [row for row in analysis.layers if row.path in modules and row.runs]
    hooks = [modules[row.path].register_forward_hook(
        lambda m, i, o, path=row.path: seen.__setitem__(path, list(o.shape[1:]))) for row in rows]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(torch.empty(1, *analysis.input, device="meta"))
    for h in hooks:
        h.remove()
    problems = []
    for row in rows:
        if seen.get(row.path) != row.output:
            problems.append(f"{row.path}: analysis {row.output}, module {seen.get(row.path)}")
    from netspec.builder import output_form
    if output_form(out) != analysis.output:
        problems.append(f"output: analysis {analysis.output}, module {output_form(out)}")
    numel = sum(p.numel() for p in model.parameters())
    if numel != analysis.params:
        problems.append(f"params: analysis {analysis.params}, module {numel}")
    if counter.get_total_flops() != 2 * analysis.macs:
        problems.append(f"macs: analysis {analysis.macs}, FlopCounterMode/2 {counter.get_total_flops() / 2}")
    return problems


def inplace_differential(spec: dict, onednn: bool = True) -> list[str]:
    """The default build (ReLUs and residual adds in place where the builder decides it is
    safe) vs the same weights built with inplace=False: identical training-mode outputs,
    input gradients and parameter gradients, no autograd error, and the caller's input
    left untouched. Returns mismatches. `onednn=False` runs both without torch's oneDNN
    kernels (see ONEDNN_6035)."""
    import torch

    import netspec
    analysis = netspec.analyze(spec)
    x = torch.randn(3, *analysis.input, generator=torch.Generator().manual_seed(0))
    with torch.backends.mkldnn.flags(enabled=onednn):
        return _inplace_vs_not(analysis, x)


# oneDNN's 1x1 convolution weight gradient on a channels-last input with a stride over 1
# and fewer input channels than its block (8 with AVX2, 16 with AVX-512) writes past its
# workspace: wrong gradients with 2+ threads, heap corruption with 1 (uxlfoundation/oneDNN#6035,
# open; torch 2.14.1 CPU). netspec's layernorm over channels and permute hand such inputs on,
# as torchvision's do. bench/fuzz.py counts a case that differs with oneDNN and not without
# apart: the large differences are this bug; oneDNN also rounds differently when the in-place
# build hands a conv another layout (outputs within 1.2e-7 of their scale, seen 3 in 10,000).
ONEDNN_6035 = "oneDNN only"


def _inplace_vs_not(analysis, x) -> list[str]:
    import torch

    import netspec
    results = []
    for inplace in (True, False):
        torch.manual_seed(0)  # same weights, same dropout masks
        model = netspec.build(analysis, inplace=inplace).train()
        given = x.clone().requires_grad_()
        kept = given.detach().clone()
        try:
            out = torch.cat([t.flatten() for t in tensors(model(given))])   # a record's tensors in order
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        except RuntimeError as e:
            return [f"inplace={inplace}: {str(e).splitlines()[0]}"]
        if not torch.equal(given.detach(), kept):
            return [f"inplace={inplace}: the forward pass changed its input"]
        results.append((out.detach(), given.grad, [p.grad for p in model.parameters()]))
    (out_a, gx_a, gp_a), (out_b, gx_b, gp_b) = results
    problems = []
    if not _same(out_a, out_b):
        problems.append(f"outputs differ by {(out_a - out_b).abs().max().item():.3g}")
    if not _same(gx_a, gx_b):
        rel = ((gx_a - gx_b).abs().max() / gx_a.abs().max().clamp_min(1e-30)).item()
        problems.append(f"{ROUNDING if rel <= 1e-6 else ''}input gradients differ by "
                        f"{(gx_a - gx_b).abs().max().item():.3g} ({rel:.2g} of their scale)")
    differing = [(a, b) for a, b in zip(gp_a, gp_b)
                 if not (a is None and b is None or a is not None and b is not None and _same(a, b))]
    if differing:
        # relative to the scale of all parameter gradients: a bias before a batch norm has a
        # gradient that cancels to ~0, whose rounding is large relative to itself alone
        scale = max((g.abs().max().item() for g in gp_a if g is not None), default=0.0)
        rel = max(((a - b).abs().max() / max(scale, 1e-30)).item() if a is not None and b is not None
                  else float("inf") for a, b in differing)
        problems.append(f"{ROUNDING}parameter gradients differ by {rel:.2g} of their scale" if rel <= 1e-6
                        else "parameter gradients differ")
    return problems


def _same(a, b) -> bool:
    """Bit for bit, a NaN equal to a NaN at the same place (a random spec may divide by zero or
    take the norm of zeros: both builds must do it alike)."""
    import torch
    return a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)


def tensors(out) -> list:
    """The tensors of a model's output: itself, or those of its dict or list, in order."""
    if isinstance(out, dict):
        return [t for v in out.values() for t in tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in tensors(v)]
    return [out]


# a gradient off by rounding only (seen with attention on tokens: autograd sums a tensor's
# incoming gradients in the order they arrive, and the in-place graph is another graph; the sum
# then takes the layout of the first to arrive, and a batch norm's backward, which reduces in
# memory order, rounds differently for another layout: seen behind a partition's residual)
ROUNDING = "rounding: "


# -- module names that clash or that torch refuses --------------------------------------------
BAD_NAMES = ["forward", "training", "_x", "__class__", "a.b", "", "-1", "share_memory"]


def _named_items(node, out: list) -> list:
    """(list, index) of every layer or construct item (a one-key mapping of fields) in the spec."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict):
                out.append((node, i))
            _named_items(item, out)
    elif isinstance(node, dict):
        for value in node.values():
            _named_items(value, out)
    return out


def with_clashing_name(r: Draw, spec: dict) -> dict:
    """The spec with one module name made to clash with a sibling's (its name or position) or
    to be one torch refuses, as a name or a shortcut_name."""
    spec = copy.deepcopy(spec)
    places = _named_items(spec.get("layers") or spec["graph"], [])
    if not places:
        return spec
    items, i = r.choice(places)
    (tag, fields), = items[i].items()
    siblings = [j for j in range(len(items)) if j != i]
    if siblings and r.chance(0.6):
        j = r.choice(siblings)
        other = next(iter(items[j].values())) if isinstance(items[j], dict) else None
        name = other.get("name") if isinstance(other, dict) and isinstance(other.get("name"), str) else str(j)
    else:
        name = r.choice(BAD_NAMES)
    key = "shortcut_name" if tag == "residual" and r.chance(0.5) else "name"
    if key == "name" and fields.get("flat"):
        fields.pop("flat")
    fields[key] = name
    return spec


def refused_or_exact(spec: dict) -> list[str]:
    """A spec with a doubtful name is refused with one line, or built exactly as analysed."""
    import netspec
    from netspec.errors import SpecError
    try:
        netspec.analyze(spec)
    except SpecError as e:
        return [] if "\n" not in str(e) else [f"error is not one line: {e!r}"]
    return differential(spec)


# -- mutation ----------------------------------------------------------------------------
WEIRD = ["64", 1.5, -3, 0, 10**12, None, True, [], {}, "ünïcødé✓", "$undefined", "${1 +}", [1, 2, 3], {"x": 1},
         "same", "global", 2**70, -0.0, "", " ", "\x00", "_body", "forward", "a.b", "block1-0", "0",
         "${2 ** 10 ** 10}", "${log(0)}", "${1 if 2 else 3}",
         "${sum(1 for j in range(10 ** 9))}", "${1 < 2 < 3}", "${16 if true else 8}"]


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, path + (i,))


def mutate(r: Draw, data: dict) -> dict:
    """One random edit: drop a key, replace a value (wrong type, negative, zero, huge,
    unicode...), swap list items, nest deeply, duplicate an item."""
    data = copy.deepcopy(data)
    paths = [p for p in _paths(data) if p]
    path = r.choice(paths)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    op = r.choice(["drop", "replace", "replace", "swap", "nest", "dup", "rename"])
    if op == "drop":
        del parent[key]
    elif op == "replace":
        parent[key] = copy.deepcopy(r.choice(WEIRD))
    elif op == "swap" and isinstance(parent, list) and len(parent) > 1:
        j = r.int(0, len(parent) - 1)
        parent[key], parent[j] = parent[j], parent[key]
    elif op == "nest":
        value = parent[key]
        for _ in range(r.int(1, 150)):
            value = [value]
        parent[key] = value
    elif op == "dup" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    elif op == "rename" and isinstance(parent, dict):
        parent[str(key) + r.choice(["x", "_", "s"])] = parent.pop(key)
    else:
        parent[key] = copy.deepcopy(r.choice(WEIRD))
    return data
