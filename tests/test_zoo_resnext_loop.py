"""The ResNeXt-50 tutorial note (issue 3): a widely read tutorial writes ResNeXt's grouped 3x3 conv
as ONE small conv applied to each of the 32 channel slices in a Python loop. Its 32 "groups" then
share one weight; torchsummary, which adds a module's weight+bias once per *call*, prints
22,976,386 parameters. The model really has 21,605,938.

This file writes that loop implementation in plain PyTorch (reconstructed from the tutorial's
Keras-to-PyTorch design: a conv stem with bias, 1x1 shortcut convs without BN, 2 classes — the
choices that reproduce its published torchsummary total exactly), and checks:
- torchsummary's way of counting gives 22,976,386, `parameters()` gives 21,605,938;
- specs/resnext50_tutorial.yaml (`groups: 32`, independent weights per group) has 22,976,386
  parameters: torchsummary's number is the size of the network the tutorial meant, not the one
  it built;
- the loop model is the grouped-conv model with all 32 group weights tied: copying its shared
  weight into each group of netspec's grouped conv gives the same outputs.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import netspec

SPECS = Path(__file__).resolve().parent.parent / "specs"
TORCHSUMMARY_TOTAL = 22_976_386      # what the tutorial's torchsummary table prints
TRUE_PARAMS = 21_605_938             # sum(p.numel() for p in model.parameters()) of the loop model


class LoopGroupedConv(nn.Module):
    """The tutorial's "grouped" conv: one conv over each channel slice, in a loop (shared weight)."""

    def __init__(self, channels: int, stride: int, groups: int = 32):
        super().__init__()
        self.groups, self.g_channels = groups, channels // groups
        self.conv = nn.Conv2d(self.g_channels, self.g_channels, 3, stride=stride, padding=1, bias=False)

    def forward(self, x):
        g = self.g_channels
        return torch.cat([self.conv(x[:, c * g:(c + 1) * g]) for c in range(self.groups)], dim=1)


class Transform(nn.Module):
    def __init__(self, in_channels: int, filters: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, filters, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.grouped_conv = LoopGroupedConv(filters, stride)
        self.bn2 = nn.BatchNorm2d(filters)
        self.conv3 = nn.Conv2d(filters, filters * 2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(filters * 2)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.grouped_conv(x)))
        return self.bn3(self.conv3(x))


class Block(nn.Module):
    def __init__(self, in_channels: int, filters: int, stride: int = 1, conv_shortcut: bool = False):
        super().__init__()
        self.transform = Transform(in_channels, filters, stride)
        self.shortcut = nn.Conv2d(in_channels, filters * 2, 1, stride=stride, bias=False) if conv_shortcut else None

    def forward(self, x):
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return torch.relu(self.transform(x) + shortcut)


class LoopResNeXt50(nn.Module):
    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)        # bias=True
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, in_channels = [], 64
        for filters, blocks, stride in ((128, 3, 1), (256, 4, 2), (512, 6, 2), (1024, 3, 2)):
            stage = [Block(in_channels, filters, stride, conv_shortcut=True)]
            stage += [Block(filters * 2, filters) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            in_channels = filters * 2
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def torchsummary_total(model: nn.Module, x: torch.Tensor) -> int:
    """torchsummary 1.5.1's "Total params": a forward hook on every module except Sequential,
    ModuleList and the model itself adds weight.numel() + bias.numel() on *every call*."""
    total, hooks = 0, []

    def hook(module, inputs, output):
        nonlocal total
        for name in ("weight", "bias"):
            tensor = getattr(module, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel()

    for module in model.modules():
        if not isinstance(module, (nn.Sequential, nn.ModuleList)) and module is not model:
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return total


def test_loop_model_true_count_and_torchsummary_count():
    model = LoopResNeXt50().eval()
    assert torchsummary_total(model, torch.randn(1, 3, 64, 64)) == TORCHSUMMARY_TOTAL
    assert sum(p.numel() for p in model.parameters()) == TRUE_PARAMS
    # the gap is 31 extra counts of each block's shared 3x3 conv (g x g x 3 x 3, g = 4, 8, 16, 32)
    shared = sum(9 * g * g * blocks for g, blocks in ((4, 3), (8, 4), (16, 6), (32, 3)))
    assert TORCHSUMMARY_TOTAL - TRUE_PARAMS == 31 * shared == 1_370_448


def test_netspec_groups_32_is_the_real_thing():
    analysis = netspec.analyze(SPECS / "resnext50_tutorial.yaml")
    assert analysis.params == TORCHSUMMARY_TOTAL
    grouped = [row for row in analysis.layers if row.path.endswith("grouped_conv")]
    assert len(grouped) == 16
    # one conv per block, 32 independent groups: weight [filters, filters / 32, 3, 3]
    assert grouped[0].params == 128 * 4 * 9 and grouped[-1].params == 1024 * 32 * 9


def test_loop_model_is_grouped_conv_with_tied_weights():
    torch.manual_seed(0)
    loop = LoopResNeXt50().eval()
    model = netspec.build(SPECS / "resnext50_tutorial.yaml").eval()
    state = {}
    for key, value in loop.state_dict().items():
        if key.endswith("grouped_conv.conv.weight"):             # [g, g, 3, 3] -> [32 g, g, 3, 3]
            state[key.replace("grouped_conv.conv.", "grouped_conv.")] = value.repeat(32, 1, 1, 1)
        else:
            state[key] = value
    # netspec's unnamed stem relu/max-pool sit at positions 2 and 3; nothing else is renamed
    model.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), loop(x), rtol=1e-4, atol=1e-4)
