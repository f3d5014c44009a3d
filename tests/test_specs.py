"""Every spec in specs/: its expectations hold and the raw document validates against the
exported JSON Schema; the static analysis equals the built module (numel, forward shape on
the meta device, MACs vs FlopCounterMode) for every spec but the family members, which are
their base's blocks with other vars (tests/test_zoo.py checks that, and their counts against
torchvision's published ones)."""
from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import netspec
from conftest import ROOT, SPECS
from netspec.analysis import check_expect
from netspec.builder import cross_check
from netspec.document.schema import json_schema
from zoo import FAMILIES

IDS = [str(p.relative_to(ROOT / "specs")) for p in SPECS]
MEMBERS = {f"{m}.yaml" for members in FAMILIES.values() for m in members}
NOT_MEMBERS = [p for p, i in zip(SPECS, IDS) if i not in MEMBERS]


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_expect_and_meta_build(path):
    analysis = netspec.analyze(path)
    assert netspec.load(path).expect is not None, "every zoo spec states expect: {params, output}"
    assert check_expect(analysis) == []
    if path in NOT_MEMBERS:  # a member's module is its base's (see the docstring)
        assert cross_check(analysis) == []
    assert sum(row.params for row in analysis.layers) == analysis.params


@pytest.mark.parametrize("path", NOT_MEMBERS, ids=[str(p.relative_to(ROOT / "specs")) for p in NOT_MEMBERS])
def test_macs_equal_flop_counter(path):
    analysis = netspec.analyze(path)
    model = netspec.build(analysis, device="meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, *analysis.input, device="meta"))
    assert analysis.macs * 2 == counter.get_total_flops()


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_spec_validates_against_json_schema(path, validator):
    data = netspec.load(path).source.data
    errors = sorted(validator.iter_errors(data), key=str)
    assert not errors, errors[0].message


def test_json_schema_rejects_what_pydantic_rejects(validator):
    good = {"netspec": 1, "name": "t", "input": [3, 8, 8], "layers": ["relu", {"conv": {"out": 4, "k": 3}}]}
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors({**good, "extra": 1}))
    assert list(validator.iter_errors({**good, "input": ["3", 8, 8]}))


def test_schema_command_writes_schema(cli, tmp_path):
    out = tmp_path / "schema.json"
    assert cli("schema", "--out", out).code == 0
    assert json.loads(out.read_text())["title"] == "netspec spec"


def test_elexnet_rows_match_published_summary():
    rows = [r.params for r in netspec.analyze(ROOT / "specs" / "elexnet.yaml").layers if r.params]
    assert rows == [2368, 32, 25664, 128, 73856, 295168, 442560, 14753312, 2460192, 15690]


def test_shallow_cnn_and_resnet18_cifar_counts():
    assert netspec.analyze(ROOT / "specs" / "shallow_cnn.yaml").params == 62_006
    assert netspec.analyze(ROOT / "specs" / "resnet18_cifar.yaml").params == 11_173_962


def test_committed_editor_schema_is_current():
    """specs/ point editors at netspec.schema.json; it must match `netspec schema`."""
    committed = json.loads((ROOT / "netspec.schema.json").read_text())
    assert committed == json_schema(), "run: netspec schema --out netspec.schema.json"
