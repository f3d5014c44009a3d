"""torchvision's detection backbones that the zoo's `*_backbone` specs reproduce (used by
tests/test_zoo_detection.py and bench/detection_parity.py; the parity procedure is
tests/zoo.py's `parity`).

Each spec is `model.backbone` of a detection builder called with weights=None and
weights_backbone=None (BatchNorm2d, every layer trainable), except resnet50_fpn_frozen_backbone:
resnet_fpn_backbone's FrozenBatchNorm2d body with trainable_layers=3.
"""
from __future__ import annotations

import contextlib
from functools import partial

import torch
import torchvision
from torchvision.models import detection
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import FrozenBatchNorm2d


def _backbone(builder: str) -> torch.nn.Module:
    return getattr(detection, builder)(weights=None, weights_backbone=None).backbone


# spec name -> what builds torchvision's backbone: every detection builder, and the FrozenBN one
BUILDERS = torchvision.models.list_models(module=detection)
DETECTION = {f"{builder}_backbone": partial(_backbone, builder) for builder in BUILDERS}
DETECTION["resnet50_fpn_frozen_backbone"] = partial(resnet_fpn_backbone, backbone_name="resnet50", weights=None,
                                                    norm_layer=FrozenBatchNorm2d, trainable_layers=3)

# family base -> members (`extends:` the base plus vars, name, description, expect, input)
FAMILIES = {
    "fasterrcnn_resnet50_fpn_backbone": ["maskrcnn_resnet50_fpn_backbone", "keypointrcnn_resnet50_fpn_backbone",
                                         "fasterrcnn_resnet50_fpn_v2_backbone", "maskrcnn_resnet50_fpn_v2_backbone",
                                         "resnet50_fpn_frozen_backbone"],
    "retinanet_resnet50_fpn_backbone": ["fcos_resnet50_fpn_backbone", "retinanet_resnet50_fpn_v2_backbone"],
    "fasterrcnn_mobilenet_v3_large_fpn_backbone": ["fasterrcnn_mobilenet_v3_large_320_fpn_backbone"],
}
# members whose vars change what runs (a norm, a frozen stage, a wiring): CI compares their
# outputs and traces them; the others are their base's network under another builder's name
VARIANTS = ["fasterrcnn_resnet50_fpn_v2_backbone", "resnet50_fpn_frozen_backbone", "retinanet_resnet50_fpn_v2_backbone"]
SAME_AS_BASE = {m for members in FAMILIES.values() for m in members} - set(VARIANTS)


def reference(name: str, device: str = "cpu") -> torch.nn.Module:
    """torchvision's backbone for spec `name`, seeded random weights (on `meta`: no memory)."""
    torch.manual_seed(0)
    with torch.device(device) if device == "meta" else contextlib.nullcontext():
        return DETECTION[name]()


def odd(shape) -> tuple[int, int, int]:
    """The spec's input grown by 13 and 7 pixels: sizes no stride divides."""
    c, h, w = shape
    return c, h + 13, w + 7
