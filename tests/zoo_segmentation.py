"""The dense-prediction zoo's references, shared by tests/test_zoo_segmentation.py (CI: structure
of every spec, outputs of one member per family at a small odd input) and
bench/segmentation_parity.py (outputs of every spec at full size and at an odd size):
torchvision's six segmentation builders, and the hand-written U-Net that specs/unet.yaml is
checked against (milesial/Pytorch-UNet's modules, transcribed, with its depth a parameter).

The parity procedure itself is tests/zoo.py's `parity` (BatchNorm calibrated on a real batch,
strict load, dict outputs compared key by key relative to their scale, eval and seeded training).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import segmentation

# spec (= builder) -> its weights enum. The published num_params and _ops are of the weights'
# model, built with aux_loss=True (the builders set it when given weights); _ops counts the eval
# forward, in which torchvision's segmentation models run the aux head too.
TORCHVISION_SEGMENTATION = {
    "fcn_resnet50": "FCN_ResNet50_Weights",
    "fcn_resnet101": "FCN_ResNet101_Weights",
    "deeplabv3_resnet50": "DeepLabV3_ResNet50_Weights",
    "deeplabv3_resnet101": "DeepLabV3_ResNet101_Weights",
    "deeplabv3_mobilenet_v3_large": "DeepLabV3_MobileNet_V3_Large_Weights",
    "lraspp_mobilenet_v3_large": "LRASPP_MobileNet_V3_Large_Weights",
}
NO_AUX = {"lraspp_mobilenet_v3_large"}   # LRASPP has no aux head (and its builder no aux_loss)

def aux_settings(name: str) -> list[bool]:
    return [False] if name in NO_AUX else [False, True]


def overrides(name: str, aux: bool) -> list[str]:
    """netspec --set overrides for torchvision's aux_loss."""
    return [] if name in NO_AUX else [f"vars.aux_loss={'true' if aux else 'false'}"]


def reference(name: str, aux: bool = False, device: str = "cpu") -> nn.Module:
    """torchvision's model (seeded random weights, no backbone weights: nothing downloaded)."""
    kwargs = {} if name in NO_AUX else {"aux_loss": aux}
    torch.manual_seed(0)
    with torch.device(device):
        return getattr(segmentation, name)(weights=None, weights_backbone=None, **kwargs)


def metadata(name: str) -> dict:
    """The published num_params and _ops (GMACs at 520x520, aux head included)."""
    return getattr(segmentation, TORCHVISION_SEGMENTATION[name]).DEFAULT.meta


# -- milesial/Pytorch-UNet (unet/unet_parts.py, unet/unet_model.py), bilinear=False ------------------
class DoubleConv(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True))

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        diff_y = x2.size()[2] - x1.size()[2]
        diff_x = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class OutConv(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x):
        return self.conv(x)


class UNet(nn.Module):
    """milesial's UNet(n_channels, n_classes, bilinear=False), whose four levels are written
    out (inc, down1..down4, up1..up4, outc); here `depth` of them, registered in its order."""

    def __init__(self, n_channels, n_classes, base=64, depth=4):
        super().__init__()
        self.depth = depth
        self.inc = DoubleConv(n_channels, base)
        for i in range(1, depth + 1):
            setattr(self, f"down{i}", Down(base * 2 ** (i - 1), base * 2 ** i))
        for i in range(1, depth + 1):
            setattr(self, f"up{i}", Up(base * 2 ** (depth - i + 1), base * 2 ** (depth - i)))
        self.outc = OutConv(base, n_classes)

    def forward(self, x):
        skips = [self.inc(x)]
        for i in range(1, self.depth + 1):
            skips.append(getattr(self, f"down{i}")(skips[-1]))
        x = skips.pop()
        for i in range(1, self.depth + 1):
            x = getattr(self, f"up{i}")(x, skips.pop())
        return self.outc(x)


def unet_reference(in_channels: int = 1, classes: int = 2, base: int = 64, depth: int = 4, device: str = "cpu") -> UNet:
    torch.manual_seed(0)
    with torch.device(device):
        return UNet(in_channels, classes, base, depth)


def unet_overrides(classes: int = 2, base: int = 64, depth: int = 4) -> list[str]:
    """netspec --set overrides for UNet(..., classes, base, depth) (its in_channels: the input's channels)."""
    return [f"vars.classes={classes}", f"vars.base={base}", f"vars.depth={depth}"]
