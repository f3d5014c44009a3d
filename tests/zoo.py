"""The zoo's torchvision references and the parity procedure, shared by tests/test_zoo.py
(CI: keys for every spec, outputs for one spec per family at small inputs) and
bench/zoo_parity.py (outputs for every spec at full size).

Parity, as it can fail: torchvision's model (seeded random weights) gets BatchNorm running
statistics from a real batch (with the default statistics deep nets give 1e-14 or 1e8
outputs, and any tolerance tests nothing) and random values for the learned tensors
initialised to a damping constant (ConvNeXt's layer_scale = 1e-6 makes every residual
branch a millionth of the output, which any tolerance would miss); the spec's module
loads its state_dict with strict=True (same keys, same order, same shapes); outputs are compared relative to their
scale, in eval mode and, seeded, in training mode (dropout and stochastic depth must draw
in torchvision's order).
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch
import torchvision.models as tvm

import netspec

SPECS = Path(__file__).resolve().parent.parent / "specs"

# spec file -> (torchvision builder, keyword arguments, weights with the published metadata): the
# weights enum ("ResNet50_Weights": its DEFAULT entry) or one entry of it ("Enum.ENTRY") where the
# DEFAULT's metadata is for another input size than the spec's (regnet_y_128gf: see specs/README.md)
TORCHVISION = {
    "resnet18": ("resnet18", {}, "ResNet18_Weights"),
    "resnet34": ("resnet34", {}, "ResNet34_Weights"),
    "resnet50": ("resnet50", {}, "ResNet50_Weights"),
    "resnet101": ("resnet101", {}, "ResNet101_Weights"),
    "resnext50": ("resnext50_32x4d", {}, "ResNeXt50_32X4D_Weights"),
    "resnext101_32x8d": ("resnext101_32x8d", {}, "ResNeXt101_32X8D_Weights"),
    "wide_resnet50_2": ("wide_resnet50_2", {}, "Wide_ResNet50_2_Weights"),
    "vgg11": ("vgg11", {}, "VGG11_Weights"),
    "vgg16": ("vgg16", {}, "VGG16_Weights"),
    "vgg11_bn": ("vgg11_bn", {}, "VGG11_BN_Weights"),
    "alexnet": ("alexnet", {}, "AlexNet_Weights"),
    "googlenet": ("googlenet", {"aux_logits": False, "transform_input": False, "init_weights": True}, "GoogLeNet_Weights"),
    "densenet121": ("densenet121", {}, "DenseNet121_Weights"),
    "mobilenet_v2": ("mobilenet_v2", {}, "MobileNet_V2_Weights"),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}, "MobileNet_V3_Small_Weights"),
    # members of the resnet50, vgg11 and densenet121 families
    "resnet152": ("resnet152", {}, "ResNet152_Weights"),
    "resnext101_64x4d": ("resnext101_64x4d", {}, "ResNeXt101_64X4D_Weights"),
    "wide_resnet101_2": ("wide_resnet101_2", {}, "Wide_ResNet101_2_Weights"),
    "vgg13": ("vgg13", {}, "VGG13_Weights"),
    "vgg13_bn": ("vgg13_bn", {}, "VGG13_BN_Weights"),
    "vgg16_bn": ("vgg16_bn", {}, "VGG16_BN_Weights"),
    "vgg19": ("vgg19", {}, "VGG19_Weights"),
    "vgg19_bn": ("vgg19_bn", {}, "VGG19_BN_Weights"),
    "densenet161": ("densenet161", {}, "DenseNet161_Weights"),
    "densenet169": ("densenet169", {}, "DenseNet169_Weights"),
    "densenet201": ("densenet201", {}, "DenseNet201_Weights"),
    # EfficientNet b0..b7 (specs/efficientnet_b0.yaml and its members)
    **{f"efficientnet_b{k}": (f"efficientnet_b{k}", {}, f"EfficientNet_B{k}_Weights") for k in range(8)},
    # squeezenet family; inception_v3 without AuxLogits (see PUBLISHED_WITH)
    "squeezenet1_0": ("squeezenet1_0", {}, "SqueezeNet1_0_Weights"),
    "squeezenet1_1": ("squeezenet1_1", {}, "SqueezeNet1_1_Weights"),
    "inception_v3": ("inception_v3", {"aux_logits": False, "transform_input": False, "init_weights": True}, "Inception_V3_Weights"),
    # RegNet (family base regnet_y_400mf). regnet_y_128gf's DEFAULT is IMAGENET1K_SWAG_E2E_V1, whose
    # _ops are at 384 px; IMAGENET1K_SWAG_LINEAR_V1 (same network, 224 px) is the comparable entry
    "regnet_y_400mf": ("regnet_y_400mf", {}, "RegNet_Y_400MF_Weights"),
    "regnet_y_800mf": ("regnet_y_800mf", {}, "RegNet_Y_800MF_Weights"),
    "regnet_y_1_6gf": ("regnet_y_1_6gf", {}, "RegNet_Y_1_6GF_Weights"),
    "regnet_y_3_2gf": ("regnet_y_3_2gf", {}, "RegNet_Y_3_2GF_Weights"),
    "regnet_y_8gf": ("regnet_y_8gf", {}, "RegNet_Y_8GF_Weights"),
    "regnet_y_16gf": ("regnet_y_16gf", {}, "RegNet_Y_16GF_Weights"),
    "regnet_y_32gf": ("regnet_y_32gf", {}, "RegNet_Y_32GF_Weights"),
    "regnet_y_128gf": ("regnet_y_128gf", {}, "RegNet_Y_128GF_Weights.IMAGENET1K_SWAG_LINEAR_V1"),
    "regnet_x_400mf": ("regnet_x_400mf", {}, "RegNet_X_400MF_Weights"),
    "regnet_x_800mf": ("regnet_x_800mf", {}, "RegNet_X_800MF_Weights"),
    "regnet_x_1_6gf": ("regnet_x_1_6gf", {}, "RegNet_X_1_6GF_Weights"),
    "regnet_x_3_2gf": ("regnet_x_3_2gf", {}, "RegNet_X_3_2GF_Weights"),
    "regnet_x_8gf": ("regnet_x_8gf", {}, "RegNet_X_8GF_Weights"),
    "regnet_x_16gf": ("regnet_x_16gf", {}, "RegNet_X_16GF_Weights"),
    "regnet_x_32gf": ("regnet_x_32gf", {}, "RegNet_X_32GF_Weights"),
    # ShuffleNetV2, MNASNet, MobileNetV3-Large
    "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", {}, "ShuffleNet_V2_X0_5_Weights"),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", {}, "ShuffleNet_V2_X1_0_Weights"),
    "shufflenet_v2_x1_5": ("shufflenet_v2_x1_5", {}, "ShuffleNet_V2_X1_5_Weights"),
    "shufflenet_v2_x2_0": ("shufflenet_v2_x2_0", {}, "ShuffleNet_V2_X2_0_Weights"),
    "mnasnet0_5": ("mnasnet0_5", {}, "MNASNet0_5_Weights"),
    "mnasnet0_75": ("mnasnet0_75", {}, "MNASNet0_75_Weights"),
    "mnasnet1_0": ("mnasnet1_0", {}, "MNASNet1_0_Weights"),
    "mnasnet1_3": ("mnasnet1_3", {}, "MNASNet1_3_Weights"),
    "mobilenet_v3_large": ("mobilenet_v3_large", {}, "MobileNet_V3_Large_Weights"),
    # ConvNeXt
    "convnext_tiny": ("convnext_tiny", {}, "ConvNeXt_Tiny_Weights"),
    "convnext_small": ("convnext_small", {}, "ConvNeXt_Small_Weights"),
    "convnext_base": ("convnext_base", {}, "ConvNeXt_Base_Weights"),
    "convnext_large": ("convnext_large", {}, "ConvNeXt_Large_Weights"),
    # EfficientNetV2
    "efficientnet_v2_s": ("efficientnet_v2_s", {}, "EfficientNet_V2_S_Weights"),
    "efficientnet_v2_m": ("efficientnet_v2_m", {}, "EfficientNet_V2_M_Weights"),
    "efficientnet_v2_l": ("efficientnet_v2_l", {}, "EfficientNet_V2_L_Weights"),
    # vision transformers: the vit_b_16 family (vit_h_14 at 224: its builder's default and the
    # SWAG_LINEAR weights; the SWAG_E2E weights are for 518, checked in tests/test_zoo_vit.py)
    "vit_b_16": ("vit_b_16", {}, "ViT_B_16_Weights"),
    "vit_b_32": ("vit_b_32", {}, "ViT_B_32_Weights"),
    "vit_l_16": ("vit_l_16", {}, "ViT_L_16_Weights"),
    "vit_l_32": ("vit_l_32", {}, "ViT_L_32_Weights"),
    "vit_h_14": ("vit_h_14", {}, "ViT_H_14_Weights.IMAGENET1K_SWAG_LINEAR_V1"),
    # windowed attention: Swin (v1 at 224, v2 at 256) and MaxViT
    "swin_t": ("swin_t", {}, "Swin_T_Weights"),
    "swin_s": ("swin_s", {}, "Swin_S_Weights"),
    "swin_b": ("swin_b", {}, "Swin_B_Weights"),
    "swin_v2_t": ("swin_v2_t", {}, "Swin_V2_T_Weights"),
    "swin_v2_s": ("swin_v2_s", {}, "Swin_V2_S_Weights"),
    "swin_v2_b": ("swin_v2_b", {}, "Swin_V2_B_Weights"),
    "maxvit_t": ("maxvit_t", {}, "MaxVit_T_Weights"),
}

# Where a published num_params is of another structure than the spec's: the torchvision kwargs
# that build the structure it counts (its difference to the spec is stated in specs/README.md).
# The metadata test checks that those kwargs give the published count, and the spec the count of
# its own reference. (_ops count an eval-mode forward, where auxiliary heads do not run.)
PUBLISHED_WITH = {
    "inception_v3": {"aux_logits": True},   # num_params counts AuxLogits (3,326,696), used in training only
}

# family base -> members: each member is `extends: <base>.yaml` plus vars (and name, description, expect)
FAMILIES = {
    "resnet18": ["resnet34"],
    "resnet50": ["resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"],
    "vgg11": ["vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"],
    "densenet121": ["densenet161", "densenet169", "densenet201"],
    "efficientnet_b0": [f"efficientnet_b{k}" for k in range(1, 8)],
    "squeezenet1_0": ["squeezenet1_1"],
    # RegNet: members set only their builder's BlockParams.from_init_params arguments
    "regnet_y_400mf": ["regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf",
                       "regnet_y_32gf", "regnet_y_128gf", "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf",
                       "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf", "regnet_x_32gf"],
    # ShuffleNetV2, MNASNet
    "shufflenet_v2_x1_0": ["shufflenet_v2_x0_5", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"],
    "mnasnet1_0": ["mnasnet0_5", "mnasnet0_75", "mnasnet1_3"],
    # ConvNeXt
    "convnext_tiny": ["convnext_small", "convnext_base", "convnext_large"],
    # EfficientNetV2
    "efficientnet_v2_s": ["efficientnet_v2_m", "efficientnet_v2_l"],
    "vit_b_16": ["vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"],
    "swin_t": ["swin_s", "swin_b"],
    "swin_v2_t": ["swin_v2_s", "swin_v2_b"],   # swin_v2_t.yaml: swin_t.yaml with Swin-v2's blocks
    # segmentation (tests/zoo_segmentation.py holds their torchvision references)
    "fcn_resnet50": ["fcn_resnet101"],
    "deeplabv3_resnet50": ["deeplabv3_resnet101"],
}

# One spec per family, a family being the specs whose torchvision models one builder file
# makes (the same wiring code): CI checks outputs, torch.compile and the training-step model
# on these, at the smallest input each takes (smallest_input); the benches check every spec
# at full size (bench/zoo_parity.py, bench/compile_zoo.py, bench/memory.py). resnet.py's
# Bottleneck (resnet50 and its members, resnext50) is tests/test_parity.py's, with groups.
ONE_PER_FAMILY = [
    "resnet18",            # resnet.py: BasicBlock
    "vgg11_bn",            # vgg.py: with the batch norms that `when: $bn` adds
    "densenet121", "efficientnet_b0", "efficientnet_v2_s",   # efficientnet.py's two block tables
    "regnet_x_400mf", "regnet_y_400mf",                      # regnet.py without and with squeeze-excitation
    "mobilenet_v2", "mobilenet_v3_small", "mnasnet0_5", "shufflenet_v2_x0_5", "squeezenet1_1",
    "googlenet", "inception_v3", "convnext_tiny", "vit_b_32", "alexnet",
    "swin_t", "swin_v2_t",   # swin.py's two blocks; at 64 px the windows are padded and shifted
    "maxvit_t",              # at 64 px its block and grid groups are 2x2
]

# specs whose image size is a variable as well as the input (a ViT's pos_embedding is declared for
# (image // patch)^2 + 1 tokens): at another size, torchvision builds with image_size and the spec
# gets vars.image too
IMAGE_VAR = {"vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"}
# specs whose reference zero-initialises tensors the output depends on (ViT's heads.head and
# class_token): parity fills every all-zero parameter with seeded random values first, or the
# outputs would be 0 whatever the spec computes
ZERO_INIT = IMAGE_VAR


# the specs other than the classification zoo's (TORCHVISION) and the family members: the
# tutorials' (tests/test_zoo_tutorial.py compares each with its tutorial's code), netspec's own
# small ones, the dense-prediction zoo (tests/zoo_segmentation.py, tests/zoo_detection.py)
OWN_SPECS = sorted(p.stem for p in SPECS.glob("*.yaml")
                   if p.stem not in TORCHVISION and not any(p.stem in members for members in FAMILIES.values()))


@functools.lru_cache(maxsize=None)
def smallest_input(name: str) -> int:
    """The smallest of 32, 48, 64, 75, 96 and 128 px that spec `name` takes (its own size if none;
    MaxViT's from 64, where its block and grid groups are 2x2, not single tokens)."""
    from netspec.errors import SpecError
    for size in (32, 48, 64, 75, 96, 128):
        if name == "maxvit_t" and size < 64:
            continue
        try:
            if at_size(name, size)[1]:
                netspec.analyze(SPECS / f"{name}.yaml", overrides=at_size(name, size)[1])
            else:
                netspec.analyze(SPECS / f"{name}.yaml", input=(3, size, size))
            return size
        except SpecError:
            continue
    return netspec.analyze(SPECS / f"{name}.yaml").input[-1]


def at_size(name: str, size: int) -> tuple[dict, list[str]]:
    """torchvision keyword arguments and netspec --set overrides for spec `name` at size x size.
    MaxViT's 7x7 groups need a multiple of 224: elsewhere it gets the largest group size that
    divides its smallest map (size / 32; torchvision's partition_size)."""
    if name == "maxvit_t" and size % 224:
        part = max(p for p in range(1, size // 32 + 1) if (size // 32) % p == 0)
        return {"input_size": (size, size), "partition_size": part}, [f"input=[3,{size},{size}]", f"vars.partition={part}"]
    if name not in IMAGE_VAR:
        return {}, []
    return {"image_size": size}, [f"input=[3,{size},{size}]", f"vars.image={size}"]


def reference(name: str, device: str = "cpu", **extra) -> torch.nn.Module:
    """torchvision's model for a zoo spec, seeded random weights (on `meta`: no memory);
    `extra` keyword arguments over the table's."""
    builder, kwargs, _ = TORCHVISION[name]
    torch.manual_seed(0)
    build = maxvit_t if name == "maxvit_t" else getattr(tvm, builder)
    with _meta_safe() if device == "meta" else contextlib.nullcontext(), torch.device(device):
        model = build(weights=None, **{**kwargs, **extra})
    if name in ZERO_INIT and device != "meta":
        fill_zeros(model)
    return model


def maxvit_t(weights=None, partition_size: int = 7, **kwargs) -> torch.nn.Module:
    """torchvision's maxvit_t, with the partition size as an argument (its builder fixes 7, which
    needs inputs of 224 or a multiple): the builder's own arguments to torchvision's _maxvit."""
    from torchvision.models.maxvit import _maxvit
    return _maxvit(stem_channels=64, block_channels=[64, 128, 256, 512], block_layers=[2, 2, 5, 2], head_dim=32,
                   stochastic_depth_prob=0.2, partition_size=partition_size, weights=weights, progress=False, **kwargs)


def fill_zeros(model: torch.nn.Module) -> torch.nn.Module:
    """Every all-zero parameter gets seeded normal values (std 0.02)."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.02)
    return model


@contextlib.contextmanager
def _meta_safe():
    """RegNet computes its stage widths with torch tensors (`.tolist()`): on the CPU."""
    from torchvision.models.regnet import BlockParams
    original = BlockParams.__dict__["from_init_params"]

    def on_cpu(cls, *args, **kwargs):
        with torch.device("cpu"):
            return original.__func__(cls, *args, **kwargs)
    BlockParams.from_init_params = classmethod(on_cpu)
    try:
        yield
    finally:
        BlockParams.from_init_params = original


def weights(name: str):
    """The torchvision weights entry the spec is compared with (no download): the table's enum's
    DEFAULT, or the entry it names."""
    enum, _, entry = TORCHVISION[name][2].partition(".")
    return getattr(getattr(tvm, enum), entry or "DEFAULT")


def metadata(name: str) -> dict:
    """torchvision's published num_params and _ops (GMACs) for the spec's weights."""
    return weights(name).meta


def crop_size(entry) -> int:
    """The input size a weights entry was evaluated at (its transforms' crop)."""
    return int(entry.transforms().crop_size[0])


def shapes(state: dict) -> list[tuple]:
    return [(k, tuple(v.shape)) for k, v in state.items()]


def natural_batch(n: int, shape, seed: int) -> torch.Tensor:
    """Images with natural statistics, enough for BatchNorm: smooth colour fields plus fine
    texture, normalised as ImageNet inputs are."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    coarse = torch.rand(n, c, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    x = x + 0.1 * torch.randn(n, c, h, w, generator=g)
    return (x - 0.45) / 0.25


def calibrate(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those of batch x (momentum None: a
    cumulative average, which after one batch is that batch's statistics)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:   # nothing to calibrate (SSD's VGG): spare the forward
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def undamp(model: torch.nn.Module, seed: int = 4) -> None:
    """Give every parameter filled with one constant other than 0 and 1 (the identity values
    of biases and norm scales) values uniform in [0.5, 1.5]: such a constant is a damping
    factor (ConvNeXt's layer_scale, 1e-6), and at it the branch it scales cannot be seen.
    FrozenBatchNorm2d's buffers (identity statistics and affine terms) get random values
    too: at identity a swapped mean and variance would go unseen."""
    from torchvision.ops import FrozenBatchNorm2d
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            first = p.flatten()[0]
            if float(first) not in (0.0, 1.0) and bool((p == first).all()):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, FrozenBatchNorm2d):
                for name in ("weight", "running_var"):
                    getattr(m, name).copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                for name in ("bias", "running_mean"):
                    getattr(m, name).copy_(0.2 * torch.randn(m.weight.shape, generator=g))


def relative(got, want) -> float:
    """Max difference relative to the reference output's scale; for outputs that are dicts
    (segmentation's {'out', 'aux'}, an FPN's feature maps) or lists, the largest over their
    tensors, each relative to its own scale, after checking that the keys come in the same order."""
    if isinstance(want, dict):
        assert list(got) == list(want), f"output keys {list(got)} differ from the reference's {list(want)}"
        return max(relative(got[k], want[k]) for k in want)
    if isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{len(got)} outputs, the reference has {len(want)}"
        return max(relative(g, w) for g, w in zip(got, want))
    return float((got - want).abs().max() / want.abs().max().clamp_min(torch.finfo(want.dtype).tiny))


def scale(y) -> float:
    """The largest magnitude in an output (a tensor, or the tensors of a dict or list)."""
    if isinstance(y, dict):
        return max(scale(v) for v in y.values())
    if isinstance(y, (list, tuple)):
        return max(scale(v) for v in y)
    return float(y.abs().max())


def spec_model(path, ref: torch.nn.Module, input_shape=None, overrides=()) -> torch.nn.Module:
    """The spec's module with the reference's weights; checks keys, order and shapes first."""
    analysis = netspec.analyze(path, input=input_shape, overrides=list(overrides))
    model = netspec.build(analysis, device="meta")
    ref_state = ref.state_dict()
    assert shapes(model.state_dict()) == shapes(ref_state), "state_dict keys, order or shapes differ"
    model.load_state_dict(ref_state, strict=True, assign=True)
    return model


def parity(path, ref: torch.nn.Module, input_shape, batch: int = 2, overrides=()) -> dict:
    """Relative output differences of the spec's module vs `ref`: eval (after calibrating
    BatchNorm on a real batch, damping constants undone) and training mode (same seed)."""
    undamp(ref)
    calibrate(ref, natural_batch(8, input_shape, seed=1))
    model = spec_model(path, ref, tuple(input_shape), overrides)
    x = natural_batch(batch, input_shape, seed=2)
    out = {}
    with torch.no_grad():
        model.eval(), ref.eval()
        want = _logits(ref(x))
        out["eval"] = relative(_logits(model(x)), want)
        out["scale"] = scale(want)
        model.train(), ref.train()
        torch.manual_seed(3)
        want = _logits(ref(x))
        torch.manual_seed(3)
        out["train"] = relative(_logits(model(x)), want)
    return out


def _logits(y):
    return y.logits if hasattr(y, "logits") else y  # inception/googlenet return a tuple-like in training
