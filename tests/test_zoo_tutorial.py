"""The "Dive into Deep Learning" tutorial set and the ResNet-50 blog tutorial, checked against
the same networks written by hand in plain PyTorch (the tutorials' own code, transcribed).

For each spec: netspec's static parameter count, the built module's parameter count and the
hand-written reference's parameter count are equal, the output shapes agree, and where the
spec mirrors the tutorial's module names the state_dict keys and shapes are equal too.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import netspec

SPECS = Path(__file__).resolve().parent.parent / "specs"


# -- the tutorials' code, transcribed --------------------------------------------------------
def d2l_lenet():
    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Sigmoid(), nn.MaxPool2d(2, 2),
                                      nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.MaxPool2d(2, 2))
            self.fc = nn.Sequential(nn.Linear(16 * 4 * 4, 120), nn.Sigmoid(), nn.Linear(120, 84),
                                    nn.Sigmoid(), nn.Linear(84, 10))

        def forward(self, img):
            feature = self.conv(img)
            return self.fc(feature.view(img.shape[0], -1))
    return LeNet()


def d2l_lenet_bn():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.Sigmoid(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.Sigmoid(), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
        nn.Linear(84, 10))


def d2l_alexnet():
    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(1, 96, 11, 4), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(96, 256, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(),
                nn.Conv2d(384, 384, 3, 1, 1), nn.ReLU(),
                nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(),
                nn.MaxPool2d(3, 2))
            self.fc = nn.Sequential(
                nn.Linear(256 * 5 * 5, 4096), nn.ReLU(), nn.Dropout(0.5),
                nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
                nn.Linear(4096, 10))

        def forward(self, img):
            feature = self.conv(img)
            return self.fc(feature.view(img.shape[0], -1))
    return AlexNet()


def d2l_vgg():
    def vgg_block(num_convs, in_channels, out_channels):
        blk = []
        for i in range(num_convs):
            blk.append(nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size=3, padding=1))
            blk.append(nn.ReLU())
        blk.append(nn.MaxPool2d(kernel_size=2, stride=2))
        return nn.Sequential(*blk)

    ratio = 8
    conv_arch = ((1, 1, 64 // ratio), (1, 64 // ratio, 128 // ratio), (2, 128 // ratio, 256 // ratio),
                 (2, 256 // ratio, 512 // ratio), (2, 512 // ratio, 512 // ratio))
    fc_features, fc_hidden_units = 512 * 7 * 7 // ratio, 4096 // ratio
    net = nn.Sequential()
    for i, (num_convs, in_channels, out_channels) in enumerate(conv_arch):
        net.add_module("vgg_block_" + str(i + 1), vgg_block(num_convs, in_channels, out_channels))
    net.add_module("fc", nn.Sequential(nn.Flatten(),
                                       nn.Linear(fc_features, fc_hidden_units), nn.ReLU(), nn.Dropout(0.5),
                                       nn.Linear(fc_hidden_units, fc_hidden_units), nn.ReLU(), nn.Dropout(0.5),
                                       nn.Linear(fc_hidden_units, 10)))
    return net


def d2l_nin():
    def nin_block(in_channels, out_channels, kernel_size, stride, padding):
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), nn.ReLU(),
                             nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
                             nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU())
    return nn.Sequential(
        nin_block(1, 96, kernel_size=11, stride=4, padding=0), nn.MaxPool2d(kernel_size=3, stride=2),
        nin_block(96, 256, kernel_size=5, stride=1, padding=2), nn.MaxPool2d(kernel_size=3, stride=2),
        nin_block(256, 384, kernel_size=3, stride=1, padding=1), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Dropout(0.5),
        nin_block(384, 10, kernel_size=3, stride=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())


def d2l_googlenet():
    class Inception(nn.Module):
        def __init__(self, in_c, c1, c2, c3, c4):
            super().__init__()
            self.p1_1 = nn.Conv2d(in_c, c1, kernel_size=1)
            self.p2_1 = nn.Conv2d(in_c, c2[0], kernel_size=1)
            self.p2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
            self.p3_1 = nn.Conv2d(in_c, c3[0], kernel_size=1)
            self.p3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
            self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
            self.p4_2 = nn.Conv2d(in_c, c4, kernel_size=1)

        def forward(self, x):
            p1 = F.relu(self.p1_1(x))
            p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
            p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
            p4 = F.relu(self.p4_2(self.p4_1(x)))
            return torch.cat((p1, p2, p3, p4), dim=1)

    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
                       nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b3 = nn.Sequential(Inception(192, 64, (96, 128), (16, 32), 32),
                       Inception(256, 128, (128, 192), (32, 96), 64),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b4 = nn.Sequential(Inception(480, 192, (96, 208), (16, 48), 64),
                       Inception(512, 160, (112, 224), (24, 64), 64),
                       Inception(512, 128, (128, 256), (24, 64), 64),
                       Inception(512, 112, (144, 288), (32, 64), 64),
                       Inception(528, 256, (160, 320), (32, 128), 128),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b5 = nn.Sequential(Inception(832, 256, (160, 320), (32, 128), 128),
                       Inception(832, 384, (192, 384), (48, 128), 128),
                       nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    return nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(1024, 10))


class D2LResidual(nn.Module):
    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return F.relu(Y + X)


def d2l_resnet18():
    def resnet_block(input_channels, num_channels, num_residuals, first_block=False):
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append(D2LResidual(input_channels, num_channels, use_1x1conv=True, strides=2))
            else:
                blk.append(D2LResidual(num_channels, num_channels))
        return blk

    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(*resnet_block(64, 64, 2, first_block=True))
    b3 = nn.Sequential(*resnet_block(64, 128, 2))
    b4 = nn.Sequential(*resnet_block(128, 256, 2))
    b5 = nn.Sequential(*resnet_block(256, 512, 2))
    net = nn.Sequential()
    for name, m in [("b1", b1), ("b2", b2), ("b3", b3), ("b4", b4), ("b5", b5),
                    ("5", nn.AdaptiveAvgPool2d((1, 1))), ("6", nn.Flatten()), ("fc", nn.Linear(512, 10))]:
        net.add_module(name, m)
    return net


def d2l_densenet():
    def conv_block(input_channels, num_channels):
        return nn.Sequential(nn.BatchNorm2d(input_channels), nn.ReLU(),
                             nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1))

    class DenseBlock(nn.Module):
        def __init__(self, num_convs, input_channels, num_channels):
            super().__init__()
            self.net = nn.Sequential(*[conv_block(num_channels * i + input_channels, num_channels)
                                       for i in range(num_convs)])

        def forward(self, X):
            for blk in self.net:
                Y = blk(X)
                X = torch.cat((X, Y), dim=1)
            return X

    def transition_block(input_channels, num_channels):
        return nn.Sequential(nn.BatchNorm2d(input_channels), nn.ReLU(),
                             nn.Conv2d(input_channels, num_channels, kernel_size=1),
                             nn.AvgPool2d(kernel_size=2, stride=2))

    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    num_channels, growth_rate = 64, 32
    num_convs_in_dense_blocks = [4, 4, 4, 4]
    blks = []
    for i, num_convs in enumerate(num_convs_in_dense_blocks):
        blks.append(DenseBlock(num_convs, num_channels, growth_rate))
        num_channels += num_convs * growth_rate
        if i != len(num_convs_in_dense_blocks) - 1:
            blks.append(transition_block(num_channels, num_channels // 2))
            num_channels = num_channels // 2
    assert num_channels == 248
    return nn.Sequential(b1, *blks, nn.BatchNorm2d(num_channels), nn.ReLU(),
                         nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(num_channels, 10))


def blog_resnet50(num_classes=3):
    """ResNet-50 the way the popular "ResNet from scratch" blog posts write it: the stride of a
    projection block sits on its first 1x1 conv, the stem max-pool has no padding (55x55 maps),
    and the head is AvgPool2d(7)."""
    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, in_channels, out_channels, i_downsample=None, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, padding=0, bias=False)
            self.batch_norm1 = nn.BatchNorm2d(out_channels)
            self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
            self.batch_norm2 = nn.BatchNorm2d(out_channels)
            self.conv3 = nn.Conv2d(out_channels, out_channels * self.expansion, kernel_size=1, stride=1, padding=0, bias=False)
            self.batch_norm3 = nn.BatchNorm2d(out_channels * self.expansion)
            self.i_downsample = i_downsample
            self.relu = nn.ReLU()

        def forward(self, x):
            identity = x.clone()
            x = self.relu(self.batch_norm1(self.conv1(x)))
            x = self.relu(self.batch_norm2(self.conv2(x)))
            x = self.batch_norm3(self.conv3(x))
            if self.i_downsample is not None:
                identity = self.i_downsample(identity)
            return self.relu(x + identity)

    class ResNet(nn.Module):
        def __init__(self, layer_list, num_classes, num_channels=3):
            super().__init__()
            self.in_channels = 64
            self.conv1 = nn.Conv2d(num_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.batch_norm1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            self.max_pool = nn.MaxPool2d(kernel_size=3, stride=2)
            self.layer1 = self._make_layer(layer_list[0], planes=64)
            self.layer2 = self._make_layer(layer_list[1], planes=128, stride=2)
            self.layer3 = self._make_layer(layer_list[2], planes=256, stride=2)
            self.layer4 = self._make_layer(layer_list[3], planes=512, stride=2)
            self.avgpool = nn.AvgPool2d(7)
            self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

        def forward(self, x):
            x = self.max_pool(self.relu(self.batch_norm1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = self.avgpool(x)
            return self.fc(x.reshape(x.shape[0], -1))

        def _make_layer(self, blocks, planes, stride=1):
            ii_downsample = None
            layers = []
            if stride != 1 or self.in_channels != planes * Bottleneck.expansion:
                ii_downsample = nn.Sequential(
                    nn.Conv2d(self.in_channels, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes * Bottleneck.expansion))
            layers.append(Bottleneck(self.in_channels, planes, i_downsample=ii_downsample, stride=stride))
            self.in_channels = planes * Bottleneck.expansion
            for _ in range(blocks - 1):
                layers.append(Bottleneck(self.in_channels, planes))
            return nn.Sequential(*layers)

    return ResNet([3, 4, 6, 3], num_classes)


# spec -> (reference factory, input shape, state_dict keys expected to match)
CASES = {
    "lenet": (d2l_lenet, (1, 28, 28), True),
    "lenet_bn": (d2l_lenet_bn, (1, 28, 28), True),
    "alexnet_d2l": (d2l_alexnet, (1, 224, 224), True),
    "vgg_d2l": (d2l_vgg, (1, 224, 224), True),
    "nin": (d2l_nin, (1, 224, 224), True),
    "googlenet_d2l": (d2l_googlenet, (1, 96, 96), False),   # d2l names branch layers p1_1 .. p4_2
    "resnet18_d2l": (d2l_resnet18, (1, 96, 96), True),
    "densenet_d2l": (d2l_densenet, (1, 96, 96), False),     # d2l wraps each dense block's layers in `.net`
    "resnet50_tutorial": (blog_resnet50, (3, 224, 224), True),
}


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def shapes(module: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_handwritten_reference(name):
    factory, input_shape, same_keys = CASES[name]
    torch.manual_seed(0)
    reference = factory().eval()
    analysis = netspec.analyze(SPECS / f"{name}.yaml")
    spec = netspec.load(SPECS / f"{name}.yaml")
    model = netspec.build(analysis).eval()

    assert tuple(analysis.input) == input_shape
    assert analysis.params == numel(reference) == numel(model)
    assert spec.expect.params == analysis.params
    x = torch.randn(2, *input_shape)
    with torch.no_grad():
        ref_out = reference(x)
        out = model(x)
    assert tuple(out.shape) == tuple(ref_out.shape) == (2, *analysis.output)
    assert list(spec.expect.output) == list(analysis.output)
    if same_keys:
        # same module names -> the reference's weights load strictly and give the same outputs
        assert shapes(model) == shapes(reference)
        model.load_state_dict(reference.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(model(x), ref_out, rtol=1e-4, atol=1e-4)


def test_resnet50_tutorial_shapes():
    """The blog's quirks: 55x55 maps after the stem (max-pool without padding), 28/14/7 after the
    strided 1x1 convs, and 23,514,179 parameters for 3 classes."""
    analysis = netspec.analyze(SPECS / "resnet50_tutorial.yaml")
    assert analysis.params == 23_514_179
    out_shapes = {row.path: tuple(row.output) for row in analysis.layers}
    assert out_shapes["max_pool"] == (64, 55, 55)
    assert out_shapes["layer1.2.batch_norm3"] == (256, 55, 55)
    assert out_shapes["layer2.0.conv1"] == (128, 28, 28)          # the stride is on the first 1x1
    assert out_shapes["layer2.0.conv2"] == (128, 28, 28)
    assert out_shapes["layer4.2.batch_norm3"] == (2048, 7, 7)
    assert out_shapes["avgpool"] == (2048, 1, 1)
