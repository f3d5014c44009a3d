"""Bounded fuzzing for CI (bench/fuzz.py runs the long version):
- differential: random valid specs (hypothesis) — analysis equals the built module, and
  the in-place build computes exactly what the out-of-place build does; the same specs
  with a module name made to clash or to be one torch refuses are refused in one line,
  or built exactly as analysed;
- mutation: random edits of the zoo specs through the CLI — compile, or one located
  error line with exit 2; never a traceback."""
from __future__ import annotations

import re

import pytest
import ruamel.yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netspec
from conftest import SPECS
from specgen import (RANDOM_SPEC_WARNINGS, Draw, differential, inplace_differential, mutate, random_spec, refused_or_exact,
                     with_clashing_name)


class HypothesisDraw(Draw):
    def __init__(self, data):
        self.data = data

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))


@pytest.mark.filterwarnings(RANDOM_SPEC_WARNINGS)
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_analysis_equals_built_module(data):
    spec, _ = random_spec(HypothesisDraw(data))
    assert differential(spec) == []


@pytest.mark.filterwarnings(RANDOM_SPEC_WARNINGS)
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_inplace_build_computes_what_the_out_of_place_build_does(data):
    spec, _ = random_spec(HypothesisDraw(data))
    assert inplace_differential(spec) == []


@pytest.mark.filterwarnings(RANDOM_SPEC_WARNINGS)
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_clashing_or_reserved_names_are_refused_or_built_exactly(data):
    draw = HypothesisDraw(data)
    spec, _ = random_spec(draw)
    assert refused_or_exact(with_clashing_name(draw, spec)) == []


@pytest.mark.filterwarnings("ignore")
def test_mutated_zoo_specs_fail_cleanly(tmp_path, cli):
    zoo = [netspec.load(p).source.data for p in SPECS if "extends" not in p.read_text()]
    yaml = ruamel.yaml.YAML()
    located = re.compile(r"^\S+:\d+:\d+: error: \S")
    path = tmp_path / "mutant.yaml"
    for seed in range(150):
        r = Draw(seed)
        with open(path, "w") as f:
            yaml.dump(mutate(r, r.choice(zoo)), f)
        run = cli("compile", "--json", path)
        if run.code == 0:
            continue
        lines = run.err.strip().splitlines()
        assert run.code == 2 and len(lines) == 1 and located.match(lines[0]), (seed, run.err)


def test_max_params_refused_before_building(cli, write):
    path = write("netspec: 1\nname: t\ninput: [100000]\nlayers:\n  - linear: 100000\n  - linear: {out: 100000000}\n")
    run = cli("compile", path, "--check-params", "--max-params", "1000000000")
    assert run.code == 2
    assert f"{path}:6:13: error: layers[1].linear: the model has 10,010,100,100,000 parameters" in run.err
