"""The CNN-zoo leaf layers written in specs: analysed, built and run end to end, and their
bad inputs ending as one located line through the real CLI.

`scale` and `add` (bare parameters) are tested at the layer level in test_layers.py until
the builder registers bare parameters on the enclosing module."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import netspec
from conftest import ROOT, spec_text
from specgen import inplace_differential

ZOO_LAYERS = """\
  - conv: {out: 8, k: 4, stride: 4, name: stem}                 # [8, 4, 4]
  - layernorm: {over: channels, eps: 1.0e-6, name: stem_norm}
  - relu                                                        # in place on a permuted view
  - conv: {out: 8, k: 3, padding: 1, groups: 8}
  - permute: [1, 2, 0]                                          # [4, 4, 8] channels last
  - layernorm: {eps: 1.0e-6, name: norm}
  - linear: 32
  - gelu
  - linear: 8
  - permute: [2, 0, 1]                                          # [8, 4, 4]
  - stochastic_depth: {p: 0.5, mode: row}
  - groupnorm: {groups: 4, name: gn}
  - relu
  - channel_shuffle: 2
  - conv_transpose: {out: 6, k: 3, stride: 2, padding: 1, output_padding: 1, name: up}   # [6, 8, 8]
  - upsample: {scale: 1.5, mode: bilinear, align_corners: false}                       # [6, 12, 12]
  - upsample: {size: [5, 7]}
  - relu
  - flatten: {start: 1}                                         # [6, 35]
  - permute: [1, 0]                                             # tokens [35, 6]
  - reshape: [-1, 3]                                            # [70, 3]
  - flatten
  - linear: {out: 10, name: fc}
"""
OUTPUTS = [[8, 4, 4], [8, 4, 4], [8, 4, 4], [8, 4, 4], [4, 4, 8], [4, 4, 8], [4, 4, 32], [4, 4, 32], [4, 4, 8], [8, 4, 4],
           [8, 4, 4], [8, 4, 4], [8, 4, 4], [8, 4, 4], [6, 8, 8], [6, 12, 12], [6, 5, 7], [6, 5, 7], [6, 35], [35, 6],
           [70, 3], [210], [10]]
# stem 8*3*16+8, stem_norm 2*8, depthwise 8*9+8, norm 2*8, 8->32, 32->8, gn 2*8, up 8*6*9+6, fc 210*10+10
PARAMS = 392 + 16 + 80 + 16 + 288 + 264 + 16 + 438 + 2110


def test_zoo_layers_analyse_build_and_run(write, cli):
    path = write(spec_text(ZOO_LAYERS, extra=f"expect: {{params: {PARAMS}, output: [10]}}\n", input_shape="[3, 16, 16]"))
    a = netspec.analyze(path)
    assert [row.output for row in a.layers] == OUTPUTS and a.params == PARAMS
    assert a.macs == sum(row.macs for row in a.layers) and a.layers[14].macs == 4 * 4 * 9 * 8 * 6  # per input position
    model = netspec.build(a)
    assert [m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU)] == [True, True, True]
    assert [k for k in model.state_dict() if k.startswith(("stem_norm", "norm", "gn"))] == \
        ["stem_norm.weight", "stem_norm.bias", "norm.weight", "norm.bias", "gn.weight", "gn.bias"]
    x = torch.randn(4, 3, 16, 16)
    torch.manual_seed(0)
    out = model.train()(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert torch.equal(model.eval()(x), model(x))  # stochastic depth is the identity in eval
    run = cli("compile", path, "--check-params")  # expect: + the meta-device cross-check
    assert run.code == 0, run.err
    assert inplace_differential(path) == []  # the ReLUs run in place: same outputs and gradients


def test_analysing_the_new_layers_imports_no_torch(write):
    path = write(spec_text(ZOO_LAYERS, input_shape="[3, 16, 16]"))
    code = ("import sys, netspec; netspec.analyze(sys.argv[1]); "
            "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


BAD = [
    # (layers, line:col, field path, words of the message)
    ("  - flatten\n  - channel_shuffle: 3\n", "6:22", "layers[1].channel_shuffle", "needs input [channels, height, width], got [300]"),
    ("  - flatten\n  - layernorm: {over: channels}\n", "6:16", "layers[1].layernorm", "layernorm over channels needs input [channels, height, width]"),
    ("  - groupnorm: {groups: 2}\n", "5:25", "layers[0].groupnorm.groups", "2 does not divide channels 3"),
    ("  - avgpool: global\n  - groupnorm: {groups: 3}\n", "6:25", "layers[1].groupnorm.groups",
     "3 groups of 3 channels at [1, 1] normalize one value each, which is always 0"),  # found by bench/fuzz.py
    ("  - channel_shuffle: {groups: 2}\n", "5:31", "layers[0].channel_shuffle.groups", "2 does not divide channels 3"),
    ("  - permute: [0, 2]\n", "5:14", "layers[0].permute", "[0, 2] is not a permutation of the sample's 3 dimensions"),
    ("  - permute: {dims: [2, 2, 0]}\n", "5:21", "layers[0].permute.dims", "is not a permutation"),
    ("  - reshape: {shape: [7, -1]}\n", "5:22", "layers[0].reshape.shape", "cannot reshape 300 elements to [7, -1]"),
    ("  - reshape: [3, 10, 11]\n", "5:14", "layers[0].reshape", "cannot reshape 300 elements to [3, 10, 11]"),
    ("  - reshape: [0, -1]\n", "5:14", "layers[0].reshape", "sizes are positive or -1"),
    ("  - flatten: {start: 3}\n", "5:22", "layers[0].flatten.start", "dimension 3 is out of range for a sample of 3"),
    ("  - flatten: {start: 2, end: 1}\n", "5:30", "layers[0].flatten.end", "end 1 comes before start 2"),
    ("  - conv_transpose: {out: 4, k: 3, stride: 2, output_padding: 2}\n", "5:63", "layers[0].conv_transpose.output_padding", "must be smaller than the stride 2"),
    ("  - conv_transpose: {out: 4, k: 3, groups: 2}\n", "5:44", "layers[0].conv_transpose.groups", "2 does not divide in_channels 3"),
    ("  - upsample: {scale: 2, size: 4}\n", "5:23", "layers[0].upsample.scale", "give either scale or size"),
    ("  - upsample: {scale: 2, align_corners: true}\n", "5:41", "layers[0].upsample.align_corners", "only bilinear and bicubic"),
    ("  - upsample: 0.05\n", "5:15", "layers[0].upsample", "leaves no output ([0, 0] from [10, 10])"),
    ("  - stochastic_depth: {p: 1.5}\n", "5:27", "layers[0].stochastic_depth.p", "less than or equal to 1"),
    ("  - stochastic_depth: {p: 0.1, mode: rows}\n", "5:38", "layers[0].stochastic_depth.mode", "'row' or 'batch'"),
]


@pytest.mark.parametrize("layers,where,field,words", BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_layer_input_is_one_located_line(write, cli, layers, where, field, words):
    path = write(spec_text(layers, input_shape="[3, 10, 10]"))
    run = cli("check", path)
    assert run.code == 2 and run.err.count("\n") == 1, run.err
    assert run.err.startswith(f"{path}:{where}: error: {field}: ") and words in run.err, run.err
