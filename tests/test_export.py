"""`netspec export`: ONNX and .pt2 files that are verified before success is reported.

One spec per family (residual, concat, dense, gate, plain) at a small input, both formats from
one dynamic-batch trace and each read back by its runtime; the CLI on the digits model with a
fixed and a dynamic batch; a broken file caught with exit 1; the missing extra named in one line;
docs/deploy.md's onnxruntime snippet run as written.
"""
from __future__ import annotations

import json
import re
import sys

import numpy as np
import onnxruntime
import pytest
import torch

import netspec
from conftest import ROOT, save_png
from netspec.deploy import export as ex

# spec -> (small input, --set overrides): one member of each family of the zoo, kept small
# (export time grows with the number of layers: torch.export and the ONNX exporter are Python)
FAMILIES = {
    "resnet18": ([3, 32, 32], ["vars.depth2=1", "vars.depth3=1", "vars.depth4=1"]),  # residual, projections
    "googlenet_d2l": ([1, 32, 32], []),          # concat branches (Inception)
    "densenet_d2l": ([1, 32, 32], ["vars.convs=2"]),  # dense connectivity, transitions
    "mobilenet_v3_small": ([3, 32, 32], []),     # gate (squeeze-excitation), hardswish, depthwise convs
    "vgg_d2l": ([1, 32, 32], []),                # plain conv stacks, dropout, linear head
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_exports_verify_in_both_formats(name, tmp_path):
    shape, overrides = FAMILIES[name]
    analysis = netspec.analyze(ROOT / "specs" / f"{name}.yaml", input=shape, overrides=overrides)
    torch.manual_seed(0)
    model = netspec.build(analysis)
    program = ex.trace(model, shape, 1, dynamic=True)
    for fmt in ex.FORMATS:
        result = ex.export(model, shape, fmt, tmp_path / f"m.{fmt}", dynamic=True, program=program)
        assert [d.batch for d in result.differences] == [1, 3]
        assert result.ok, [str(d) for d in result.differences]
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # a named dynamic dimension
    assert session.run(None, {"input": np.zeros([5, *shape], np.float32)})[0].shape == (5, analysis.output[0])


DIGITS = str(ROOT / "specs" / "digits.yaml")
WROTE = re.compile(r"^wrote (\S+) .*verified with .* max rel ([0-9.e+-]+)")


def test_cli_onnx_fixed_batch_and_pt2_dynamic(cli, digits_ckpt, tmp_path):
    r = cli("export", DIGITS, "--ckpt", digits_ckpt, "--format", "onnx", "--batch", "2", "-o", tmp_path / "d.onnx")
    assert r.code == 0, r.err
    assert WROTE.match(r.out) and "input [2, 1, 8, 8]" in r.out and "batch 2:" in r.out and "onnxruntime" in r.out
    assert "init: 20 tensors from" in r.err  # what was loaded is said, on stderr
    session = onnxruntime.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 1, 8, 8]
    meta = json.loads(session.get_modelmeta().custom_metadata_map["netspec"])
    assert meta["classes"] == [str(i) for i in range(10)] and len(meta["mean"]) == 1 and meta["batch"] == 2

    r = cli("export", DIGITS, "--ckpt", digits_ckpt, "--format", "pt2", "--dynamic-batch", "-o", tmp_path / "d.pt2")
    assert r.code == 0, r.err
    assert "input [batch, 1, 8, 8]" in r.out and "batch 1:" in r.out and "batch 3:" in r.out
    assert "torch.export.load" in r.out
    module = torch.export.load(tmp_path / "d.pt2").module()
    eager = netspec.build(netspec.analyze(DIGITS)).eval()
    eager.load_state_dict(torch.load(digits_ckpt, weights_only=True)["model"])
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(module(x), eager(x))


def test_a_file_that_differs_is_exit_1(cli, digits_ckpt, tmp_path, monkeypatch):
    real = ex.run_onnx

    def off_by_a_little(path):  # the file as written, its output nudged by 0.1% of its scale
        run = real(path)
        return lambda x: (lambda y: y + 1e-3 * y.abs().max())(run(x))

    monkeypatch.setattr(ex, "run_onnx", off_by_a_little)
    r = cli("export", DIGITS, "--ckpt", digits_ckpt, "--format", "onnx", "-o", tmp_path / "d.onnx")
    assert r.code == 1
    line = r.err.strip().splitlines()[-1]
    assert "check failed" in line and "tolerance" in line and "max rel 1.00e-03" in line


def test_missing_extra_is_one_line_naming_it(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    r = cli("export", DIGITS, "--format", "onnx", "-o", tmp_path / "d.onnx")
    assert r.code == 2 and r.out == ""
    assert r.err.strip().splitlines() == [
        "error: netspec export --format onnx needs onnxruntime (the 'export' extra): "
        "pip install -e '.[export]' (from a clone) or pip install 'netspec[export]'"]
    assert not (tmp_path / "d.onnx").exists()


@pytest.mark.parametrize("argv,needle", [
    (["--format", "onnx", "--opset", "17"], "opset 18 or newer"),
    (["--format", "pt2", "--opset", "18"], "only --format onnx has an opset"),
    (["--format", "onnx", "--init-skip", "fc.*"], "--init-skip needs --init"),
    (["--format", "onnx", "--init", "nope.pt"], "no such file"),
])
def test_bad_arguments_are_one_line_exit_2(cli, tmp_path, argv, needle):
    r = cli("export", DIGITS, *argv, "-o", tmp_path / "d.x")
    assert r.code == 2 and needle in r.err.strip().splitlines()[-1], r.err


def test_docs_onnxruntime_snippet_runs_as_written(cli, digits_ckpt, tmp_path, monkeypatch):
    """docs/deploy.md's five lines, on a digits image, agree with `netspec predict`."""
    from netspec.data.datasets import load_dataset
    from netspec.document.train import DigitsData

    monkeypatch.chdir(tmp_path)
    assert cli("export", DIGITS, "--ckpt", digits_ckpt, "--format", "onnx").code == 0  # writes digits.onnx here
    image = load_dataset(DigitsData(), [1, 8, 8]).test_x[0, 0].numpy()  # H x W uint8, as an image reads
    text = (ROOT / "docs" / "deploy.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(snippet.strip().splitlines()) == 5
    scope = {"image": image}
    exec(compile(snippet, "docs/deploy.md", "exec"), scope)  # noqa: S102 - our own documentation
    save_png(torch.from_numpy(image)[None], str(tmp_path / "x.png"))
    r = cli("predict", DIGITS, "--ckpt", digits_ckpt, tmp_path / "x.png", "--json", "--top", "1")
    assert scope["label"] == json.loads(r.out)["top"][0]["class"]
