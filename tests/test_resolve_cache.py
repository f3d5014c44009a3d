"""Resolve evaluates a block's body once per distinct argument set, and validates a layer
once per distinct type and values (netspec.resolver: _Bodies, _Resolver.layers). A wrong
cache is a silent wrong model, so every outcome here — the graph, or the error with its
place and words — is compared with resolving everything at every use."""
from __future__ import annotations

import warnings

import pytest

import netspec
from netspec import resolver
from netspec.errors import SpecError

from conftest import SPECS


class _Forgetful(dict):
    def __setitem__(self, key, value):  # remembers no layer: each is validated where it is used
        pass


@pytest.fixture
def uncached(monkeypatch):
    """A context in which resolve remembers nothing: every body is resolved at its call."""
    import contextlib

    @contextlib.contextmanager
    def without_caches():
        expand, init = resolver._Bodies.expand, resolver._Resolver.__init__

        def fresh_expand(self, *args):
            self.done.clear()
            return expand(self, *args)

        def forgetful_init(self, *args):
            init(self, *args)
            self.layers = _Forgetful()
        with monkeypatch.context() as m:
            m.setattr(resolver._Bodies, "expand", fresh_expand)
            m.setattr(resolver._Resolver, "__init__", forgetful_init)
            yield
    return without_caches


def outcome(spec, **kw):
    """The resolved graph in full (every module's name and layer), or the error a user sees;
    and the warnings given on the way."""
    with warnings.catch_warnings(record=True) as given:
        warnings.simplefilter("always")
        try:
            graph = resolver.resolve(netspec.load(spec), **kw)
        except SpecError as e:
            return f"error: {e}"
    return "\n".join([f"{graph}", f"{graph!r}", *(str(w.message) for w in given)])


def both(spec, uncached, **kw) -> tuple[str, str]:
    with uncached():
        plain = outcome(spec, **kw)
    return outcome(spec, **kw), plain


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_zoo_spec_resolves_as_without_the_caches(path, uncached):
    cached, plain = both(path, uncached)
    assert not cached.startswith("error"), cached
    assert cached == plain


def spec(layers, blocks, **extra):
    return {"netspec": 1, "name": "t", "input": [4, 8, 8], "layers": layers, "blocks": blocks, **extra}


def test_a_block_called_with_many_argument_sets(uncached):
    # 30 calls, 6 argument sets, nested calls, names from arguments, a flat construct whose
    # children the caller numbers, and overrides of single copies
    blocks = {
        "unit": {"args": {"c": "required", "k": 1, "tag": "u"}, "body": [
            {"conv": {"out": "$c", "k": "$k", "padding": "${k // 2}", "name": "${tag}conv"}},
            {"when": "${c > 8}", "body": ["relu"], "else": ["sigmoid"]}]},
        "pair": {"args": {"c": "required"}, "body": [
            {"concat": {"flat": True, "branches": [[{"unit": {"c": "$c"}}], [{"unit": {"c": "$c", "k": 3}}]]}}]},
    }
    layers = [{"repeat": 10, "name": "stage", "body": [{"unit": {"c": "${4 + 4 * (i % 3)}", "tag": "t"}}],
               "overrides": {0: {"k": 3}, -1: {"c": 16}}},
              {"repeat": 10, "body": [{"pair": {"c": "${8 * (1 + i % 2)}"}}]},
              {"repeat": 10, "body": [{"unit": {"c": 4}}]}]
    cached, plain = both(spec(layers, blocks), uncached)
    assert not cached.startswith("error"), cached
    assert cached == plain
    assert "stage" in cached and "tconv" in cached


@pytest.mark.parametrize("first, second, bad", [
    ("true", 1, "Input should be a valid boolean"),     # 1 == True in Python
    (2, 2.0, "Input should be a valid integer"),         # 2 == 2.0
])
def test_equal_values_of_other_types_are_other_argument_sets(first, second, bad, uncached):
    blocks = {"b": {"args": {"v": "required"}, "body": [{"conv": {"out": 4, "k": 1, "bias": "$v"}}]},
              "w": {"args": {"v": "required"}, "body": [{"conv": {"out": "$v", "k": 1}}]}}
    use = "b" if first == "true" else "w"
    layers = [{use: {"v": True if first == "true" else first}}, {use: {"v": second}}]
    cached, plain = both(spec(layers, blocks), uncached)
    assert cached == plain
    assert cached.startswith("error") and bad in cached


def test_zero_and_negative_zero_are_other_argument_sets(uncached):
    blocks = {"b": {"args": {"s": "required"}, "body": [{"leaky_relu": {"negative_slope": "$s"}}]}}
    cached, plain = both(spec([{"b": {"s": 0.0}}, {"b": {"s": -0.0}}], blocks), uncached)
    assert cached == plain
    assert "negative_slope=-0.0" in cached and "negative_slope=0.0" in cached


def test_a_cycle_is_refused_even_where_the_body_was_resolved_outside_it(uncached):
    # b(0) calls e(0), which calls nothing; e(1) calls b(0): a block that uses itself, by name
    blocks = {"b": {"args": {"x": "required"}, "body": [{"e": {"y": 0}}]},
              "e": {"args": {"y": "required"}, "body": [{"when": "${y == 1}", "body": [{"b": {"x": 0}}], "else": ["relu"]}]}}
    cached, plain = both(spec([{"b": {"x": 0}}, {"e": {"y": 1}}], blocks), uncached)
    assert cached == plain
    assert "block 'e' uses itself (e -> b -> e)" in cached


@pytest.mark.parametrize("limit", [5, 20, 41, 42, 60, 200])
def test_the_item_bound_stops_at_the_same_item(limit, uncached):
    blocks = {"b": {"args": {"c": 4}, "body": ["relu", {"conv": {"out": "$c", "k": 1}}, "relu"]}}
    s = spec([{"repeat": 10, "body": ["b"]}, {"repeat": 3, "body": [{"b": {"c": 8}}]}], blocks)
    cached, plain = both(s, uncached, max_items=limit)
    assert cached == plain
    assert cached.startswith("error") == (limit < 53)  # 1 repeat + 10 * 4 + 1 repeat + 3 * 4


def test_the_range_loop_budget_runs_out_at_the_same_call(uncached):
    # each call's body loops 25,000 operations; the spec may do 100,000 in all: the 5th is refused
    blocks = {"b": {"args": {"c": 4}, "body": [{"conv": {"out": "${c + sum(0 for j in range(0, 25000))}", "k": 1}}]}}
    cached, plain = both(spec([{"repeat": 5, "body": ["b"]}], blocks), uncached)
    assert cached == plain
    assert "a range loop of" in cached and "refused" in cached


def test_warnings_are_given_again_where_a_stored_body_is_used(uncached):
    # a graph body with a node that reaches no output, called with one argument set at two places
    # (and inside another block, twice): every use warns, placed as it is
    blocks = {"g": {"args": {"c": 4}, "body": [{"graph": {"nodes": {"a": "relu", "b": {"from": "input", "conv": {"out": "$c", "k": 1}}},
                                                         "outputs": "b"}}]},
              "two": {"args": {}, "body": [{"g": {"name": "x"}}, {"g": {"name": "y"}}]}}
    cached, plain = both(spec(["g", "g", "two", "two"], blocks), uncached)
    assert cached == plain
    warned = [line for line in cached.splitlines() if "reaches no output" in line]
    assert len(warned) == 6 and len(set(warned)) == 4, warned   # each use warns, placed at its own call
