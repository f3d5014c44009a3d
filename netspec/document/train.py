"""The spec's `train:` section: what to train on and how, as strict, closed models.

Owns `TrainConfig` and its nested models (dataset, augmentation, normalization,
optimizer, schedule, loss). Every field carries a one-line `description`: it becomes the
JSON Schema that editors read and the field list that `netspec train --help` prints.
Optimizer, schedule and dataset are unions told apart by their `name`; an unknown name
is an error that lists the valid ones. `train: {}` is a working configuration (the
embedded `digits` dataset, SGD, one-cycle).

Must not import torch, nor anything from netspec past `spec/`: `netspec check` and
`netspec schema` validate this section without torch.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator


class _Strict(BaseModel):
    # strict: "64" is not an int, "no" is not false; closed: a typo is an error, not ignored;
    # finite: no field means infinity or NaN (the loader refuses them too; this holds for
    # a TrainConfig built in Python)
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


# the bounds of what torch and the machine can take, so a setting that validates also runs
MAX_SEED = 2**63 - 1           # torch.manual_seed and Generator seeds are 64-bit
MAX_BATCH = 2**24              # images in one batch
MAX_IMAGES = 2**27             # a synthetic set (ImageNet has 2**20)
MAX_THREADS = 4096
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Beta = Annotated[float, Field(ge=0, lt=1)]


def _tagged_by_name(default: str, kind: str, names: tuple[str, ...]):
    """A discriminator that reads `name` and falls back to `default` when it is left
    out, so `optimizer: {lr: 0.1}` means the default optimizer with that rate."""

    def pick(value: Any) -> str | None:
        if isinstance(value, dict):
            name = value.get("name", default)
        else:
            name = getattr(value, "name", default)
        return name if isinstance(name, str) else None

    return Discriminator(pick, custom_error_type=f"unknown_{kind}",
                         custom_error_message=f"unknown {kind} name; valid names: {', '.join(names)}")


DATASET_NAMES = ("digits", "synthetic", "cifar10", "cifar100", "mnist", "fashion_mnist", "imagefolder",
                 "digits_canvas", "segmentation_folder")
SEGMENTATION_DATASETS = ("digits_canvas", "segmentation_folder")   # masks, not labels
OPTIMIZER_NAMES = ("sgd", "adam", "adamw")
SCHEDULE_NAMES = ("constant", "step", "cosine", "onecycle", "poly")
IGNORE = 255   # the mask value that counts nowhere (VOC's border)

# ---------------------------------------------------------------- datasets

class DigitsData(_Strict):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): ships
    inside the installed package, so the demo needs no network."""

    name: Literal["digits"] = Field("digits", description="Dataset name.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Fraction of the images held out for testing (a fixed random split).")
    split_seed: Seed = Field(0, description="Seed of the random train/test split.")


class SyntheticData(_Strict):
    """Random class templates plus noise, shaped like the spec's input: for tests."""

    name: Literal["synthetic"] = Field("synthetic", description="Dataset name.")
    train_size: int = Field(512, ge=1, le=MAX_IMAGES, description="Number of training images.")
    test_size: int = Field(256, ge=1, le=MAX_IMAGES, description="Number of test images.")
    classes: int = Field(10, ge=2, description="Number of classes (at most train_size: one template image each).")
    noise: float = Field(40.0, ge=0, description="Standard deviation of the pixel noise around each class template (0..255 scale).")
    seed: Seed = Field(0, description="Seed the images are drawn from.")

    @model_validator(mode="after")
    def _classes_fit(self) -> "SyntheticData":
        if self.classes > self.train_size:
            raise ValueError(f"{self.classes:,} classes but {self.train_size:,} training images; "
                             f"classes is at most train_size")
        return self


class TorchvisionData(_Strict):
    """A dataset torchvision knows by name, read from `root` (downloaded there on request)."""

    name: Literal["cifar10", "cifar100", "mnist", "fashion_mnist"] = Field(description="Dataset name.")
    root: str | None = Field(None, description="Folder holding the dataset; default ~/.cache/netspec/data.")
    download: bool = Field(False, description="Download the dataset into root when it is missing.")


class ImageFolderData(_Strict):
    """Any `root/<split>/<class>/*.jpg|png` tree, or one `root/<class>/*` tree split at random."""

    name: Literal["imagefolder"] = Field("imagefolder", description="Dataset name.")
    root: str = Field(description="Folder holding the images.")
    train_dir: str = Field("train", description="Subfolder of root with the training images (one folder per class).")
    test_dir: str = Field("test", description="Subfolder of root with the test images (one folder per class).")
    split: float | None = Field(None, gt=0, lt=1, description="If set, ignore train_dir/test_dir and split root/<class>/* at random, this fraction for training (e.g. 0.8).")
    split_seed: Seed = Field(0, description="Seed of the random split.")
    resize: bool = Field(False, description="Resize every image to the spec's input height and width (else sizes must already match).")


class DigitsCanvasData(_Strict):
    """Segmentation offline: scikit-learn's 8x8 digits, enlarged and placed on a canvas (up to one
    per quarter, at random offsets); each pixel is labelled with its digit's class + 1, the
    background 0, and the blurred rim between a digit and the background is ignored (255).
    Deterministic from `seed`; a digit image is in the train or the test canvases, never both."""

    name: Literal["digits_canvas"] = Field("digits_canvas", description="Dataset name.")
    size: int = Field(32, ge=16, le=256, description="Canvas side in pixels (the spec's input is [1, size, size]).")
    train_size: int = Field(2000, ge=1, le=MAX_IMAGES, description="Training canvases.")
    test_size: int = Field(500, ge=1, le=MAX_IMAGES, description="Test canvases.")
    seed: Seed = Field(0, description="Seed of the placement and of the split of the digit images.")


class SegmentationFolderData(_Strict):
    """`root/{train,test}/images/*.{jpg,png,...}` with `root/{train,test}/masks/<same stem>.png`: a
    mask's pixels are class indices (8-bit gray or palette PNG), 255 ignored. With `train_list` and
    `test_list` (files of stems, one a line), both splits come from `root/images` and `root/masks`:
    PASCAL VOC's layout (images: JPEGImages, masks: SegmentationClass, lists in
    ImageSets/Segmentation)."""

    name: Literal["segmentation_folder"] = Field("segmentation_folder", description="Dataset name.")
    root: str = Field(description="Folder holding train/ and test/, each with images/ and masks/ (or images/ and masks/ and the lists).")
    classes: Annotated[list[str], Field(min_length=2)] = Field(description="Class names, in mask-index order (0 is usually the background).")
    train_dir: str = Field("train", description="Subfolder of root with the training images/ and masks/.")
    test_dir: str = Field("test", description="Subfolder of root with the test images/ and masks/.")
    images: str = Field("images", description="Name of the images subfolder (VOC: JPEGImages).")
    masks: str = Field("masks", description="Name of the masks subfolder (VOC: SegmentationClass).")
    train_list: str | None = Field(None, description="A file (relative to root) naming the training images' stems, one a line; with test_list, both splits are read from root/images and root/masks (VOC: ImageSets/Segmentation/train.txt).")
    test_list: str | None = Field(None, description="A file (relative to root) naming the test images' stems (VOC: ImageSets/Segmentation/val.txt).")

    @model_validator(mode="after")
    def _lists_together(self):
        if (self.train_list is None) != (self.test_list is None):
            raise ValueError("give train_list and test_list together (or neither: train_dir and test_dir)")
        return self


Dataset = Annotated[
    Union[
        Annotated[DigitsData, Tag("digits")],
        Annotated[SyntheticData, Tag("synthetic")],
        Annotated[TorchvisionData, Tag("cifar10")],
        Annotated[TorchvisionData, Tag("cifar100")],
        Annotated[TorchvisionData, Tag("mnist")],
        Annotated[TorchvisionData, Tag("fashion_mnist")],
        Annotated[ImageFolderData, Tag("imagefolder")],
        Annotated[DigitsCanvasData, Tag("digits_canvas")],
        Annotated[SegmentationFolderData, Tag("segmentation_folder")],
    ],
    _tagged_by_name("digits", "dataset", DATASET_NAMES),
]


class Augmentation(_Strict):
    """Training-time augmentation, applied on the training device batch by batch."""

    crop_padding: int = Field(0, ge=0, description="Random crop after padding each side by this many pixels (0 = off; 4 is usual for CIFAR).")
    padding_mode: Literal["zeros", "reflect"] = Field("reflect", description="How the crop padding is filled.")
    flip: bool = Field(False, description="Random horizontal flip with probability 1/2.")
    cutout: int = Field(0, ge=0, description="Zero (after normalization: set to the mean) one random square of this side per image (0 = off; 16 is usual for CIFAR).")
    test_flip: bool = Field(False, description="At evaluation, average the logits of each image and its mirror image.")
    scale: Annotated[list[Annotated[float, Field(gt=0, le=16)]], Field(min_length=2, max_length=2)] | None = Field(
        None, description="Segmentation: resize each image and its mask by a random factor in [low, high] (masks nearest), e.g. [0.5, 2.0].")
    crop: int | None = Field(None, ge=1, le=2**14, description="Segmentation: a random crop of this side (padded with 0, masks with the ignore index, where smaller); default the input's size.")


MIN_STD = 1e-6  # the smallest per-channel std netspec measures (a constant channel) and accepts


class Normalization(_Strict):
    """Per-channel (x/255 - mean) / std; left out, mean and std are measured on the training images."""

    mean: list[float] | None = Field(None, description="Per-channel mean on the 0..1 scale; default measured on the training set.")
    std: list[float] | None = Field(None, description="Per-channel standard deviation on the 0..1 scale; default measured on the training set.")

    @model_validator(mode="after")
    def _same_length(self) -> "Normalization":
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} channels but std has {len(self.std)}")
        if self.std is not None and any(not s >= MIN_STD for s in self.std):
            raise ValueError(f"std must be at least {MIN_STD:g} (pixels are divided by it: less overflows to inf/NaN)")
        return self


# ---------------------------------------------------------------- optimizers

class SGD(_Strict):
    name: Literal["sgd"] = Field("sgd", description="Optimizer name.")
    lr: float = Field(0.1, gt=0, description="Peak learning rate (the schedule scales it).")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum factor.")
    nesterov: bool = Field(True, description="Use Nesterov momentum.")
    weight_decay: float = Field(5e-4, ge=0, description="L2 weight decay (coupled, as in torch.optim.SGD).")
    decay_norm_and_bias: bool = Field(False, description="Also apply weight decay to normalization weights and biases.")


class Adam(_Strict):
    name: Literal["adam"] = Field("adam", description="Optimizer name.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (the schedule scales it).")
    betas: Annotated[list[Beta], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: [0.9, 0.999], description="Coefficients of the running averages of the gradient and its square, each in [0, 1).")
    eps: float = Field(1e-8, gt=0, description="Term added to the denominator for numerical stability.")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay (coupled, as in torch.optim.Adam).")
    decay_norm_and_bias: bool = Field(False, description="Also apply weight decay to normalization weights and biases.")


class AdamW(_Strict):
    name: Literal["adamw"] = Field("adamw", description="Optimizer name.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (the schedule scales it).")
    betas: Annotated[list[Beta], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: [0.9, 0.999], description="Coefficients of the running averages of the gradient and its square, each in [0, 1).")
    eps: float = Field(1e-8, gt=0, description="Term added to the denominator for numerical stability.")
    weight_decay: float = Field(0.05, ge=0, description="Decoupled weight decay (as in torch.optim.AdamW).")
    decay_norm_and_bias: bool = Field(False, description="Also apply weight decay to normalization weights and biases.")


Optimizer = Annotated[
    Union[Annotated[SGD, Tag("sgd")], Annotated[Adam, Tag("adam")], Annotated[AdamW, Tag("adamw")]],
    _tagged_by_name("sgd", "optimizer", OPTIMIZER_NAMES),
]


# ---------------------------------------------------------------- schedules (stepped every batch)

class ConstantSchedule(_Strict):
    name: Literal["constant"] = Field("constant", description="Schedule name.")
    warmup_epochs: float = Field(0.0, ge=0, description="Epochs of linear warmup from 0 to the peak learning rate.")


class StepSchedule(_Strict):
    name: Literal["step"] = Field("step", description="Schedule name.")
    milestones: list[Fraction] = Field(default_factory=lambda: [0.5, 0.75], description="Fractions of training (0..1) at which the rate is multiplied by gamma.")
    gamma: float = Field(0.1, gt=0, description="Factor applied at each milestone.")
    warmup_epochs: float = Field(0.0, ge=0, description="Epochs of linear warmup from 0 to the peak learning rate.")


class CosineSchedule(_Strict):
    name: Literal["cosine"] = Field("cosine", description="Schedule name.")
    final_ratio: float = Field(0.0, ge=0, le=1, description="Final learning rate as a fraction of the peak.")
    warmup_epochs: float = Field(0.0, ge=0, description="Epochs of linear warmup from 0 to the peak learning rate.")


class OneCycleSchedule(_Strict):
    name: Literal["onecycle"] = Field("onecycle", description="Schedule name.")
    pct_start: float = Field(0.25, gt=0, lt=1, description="Fraction of training spent rising to the peak learning rate.")
    div_factor: float = Field(25.0, ge=1, description="Initial learning rate = peak / div_factor.")
    final_div_factor: float = Field(1e3, ge=1, description="Final learning rate = initial / final_div_factor.")
    anneal: Literal["linear", "cos"] = Field("linear", description="Shape of the rise and fall.")


class PolySchedule(_Strict):
    name: Literal["poly"] = Field("poly", description="Schedule name.")
    power: float = Field(0.9, gt=0, description="The rate is peak * (1 - t/T) ** power over the steps after warmup (torchvision's segmentation references: 0.9).")
    warmup_epochs: float = Field(0.0, ge=0, description="Epochs of linear warmup from 0 to the peak learning rate.")


Schedule = Annotated[
    Union[
        Annotated[ConstantSchedule, Tag("constant")],
        Annotated[StepSchedule, Tag("step")],
        Annotated[CosineSchedule, Tag("cosine")],
        Annotated[OneCycleSchedule, Tag("onecycle")],
        Annotated[PolySchedule, Tag("poly")],
    ],
    _tagged_by_name("onecycle", "schedule", SCHEDULE_NAMES),
]


class EMA(_Strict):
    """An exponential moving average of the weights and batch-norm statistics
    (torch.optim.swa_utils.AveragedModel): when on, evaluation, best.pt and the reported
    accuracy use the averaged weights; last.pt keeps both."""

    decay: float = Field(0.0, ge=0, lt=1, description="Decay per optimizer step, e.g. 0.999 (0 = off).")
    every: int = Field(1, ge=1, description="Update the average every N steps, with decay**N, to spend less time on it.")


class Loss(_Strict):
    """Cross-entropy on the model's logits (per pixel for segmentation: the mean over the pixels
    not ignored, PyTorch's default)."""

    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    ignore_index: int = Field(IGNORE, ge=0, le=255, description="Segmentation: the mask value that counts in no loss and no metric.")
    class_weights: list[Annotated[float, Field(ge=0)]] | None = Field(None, min_length=2, description="Weight of each class in the cross-entropy (torch's weight=; the mean is then weighted).")
    outputs: dict[str, Annotated[float, Field(ge=0)]] | None = Field(None, min_length=1, description="For a model that returns a record: the loss weight of each output, e.g. {out: 1.0, aux: 0.5}; default out 1.0 and aux 0.5 (torchvision's references). Checked against the spec's outputs.")


# ---------------------------------------------------------------- the section

class TrainConfig(_Strict):
    """How `netspec train` trains the spec's model. Every field can be set from the
    command line: `--set train.optimizer.lr=0.05`."""

    dataset: Dataset = Field(default_factory=DigitsData, description="What to train and test on; `name` picks the dataset.")
    augmentation: Augmentation = Field(default_factory=Augmentation, description="Training-time augmentation, done on the training device.")
    normalization: Normalization = Field(default_factory=Normalization, description="Input normalization, done on the training device.")
    optimizer: Optimizer = Field(default_factory=SGD, description="The optimizer; `name` is sgd, adam or adamw.")
    schedule: Schedule = Field(default_factory=OneCycleSchedule, description="Learning-rate schedule, stepped every batch; `name` is constant, step, cosine, onecycle or poly.")
    loss: Loss = Field(default_factory=Loss, description="The loss (cross-entropy).")
    ema: EMA = Field(default_factory=EMA, description="Evaluate a moving average of the weights (off by default).")
    epochs: int = Field(10, ge=1, le=1_000_000, description="Passes over the training set.")
    batch_size: int = Field(128, ge=1, le=MAX_BATCH, description="Global batch size: with N processes each takes batch_size / N.")
    eval_batch_size: int | None = Field(None, ge=1, le=MAX_BATCH, description="Batch size at evaluation; default 2 x batch_size.")
    eval_every: int = Field(1, ge=1, description="Evaluate on the test set every N epochs (and always after the last).")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Arithmetic: fp32, or bf16/fp16 autocast (fp16 adds loss scaling).")
    channels_last: bool = Field(False, description="Keep images and convolution weights in channels-last memory layout (faster on tensor cores).")
    compile: bool = Field(False, description="Compile the model with torch.compile (slow start, faster steps on GPU).")
    grad_clip: float | None = Field(None, gt=0, description="Clip the global gradient norm to this value.")
    seed: Seed = Field(0, description="Seed of weight initialization, shuffling and augmentation.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train; auto picks cuda when available (the --device option overrides).")
    data_on_device: bool = Field(True, description="Keep the whole decoded dataset as uint8 on the training device.")
    cpu_threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="CPU threads when training on the CPU; default torch's, or 1 for a small model (under 1 GMAC per batch), which threads only slow down.")


def input_problem(config: TrainConfig, shape: list[int]) -> tuple[str, tuple] | None:
    """What in the train section cannot work with the spec's input shape, as (message,
    path into the document): found by `netspec check`, not by a crash in the first batch."""
    if len(shape) != 3:
        return (f"the trainer trains on images, but the spec's input {list(shape)} is not [C, H, W]; "
                f"take the image and start with flatten"), ("input",)
    channels, height, width = shape
    for name in ("mean", "std"):
        values = getattr(config.normalization, name)
        if values is not None and len(values) != channels:
            return (f"{len(values)} values for the {channels} channels of the spec's input {list(shape)}",
                    ("train", "normalization", name))
    pad = config.augmentation.crop_padding
    if config.augmentation.padding_mode == "reflect" and pad >= min(height, width):
        return (f"reflect padding of {pad} needs images larger than {pad} pixels a side; the input is "
                f"{height}x{width} (lower it or use padding_mode: zeros)"), ("train", "augmentation", "crop_padding")
    if pad > min(height, width):  # a crop could fall entirely in the padding (and 10**9 allocates the padded image)
        return (f"padding of {pad} is larger than the {height}x{width} input; at most {min(height, width)}",
                ("train", "augmentation", "crop_padding"))
    return None


DEFAULT_OUTPUT_WEIGHTS = {"out": 1.0, "aux": 0.5}   # torchvision's segmentation references
DIGIT_CANVAS_CLASSES = 11   # background and the ten digits


def task_of(output) -> str | None:
    """What the model's output (its plain form) is for: 'classification' ([classes]),
    'segmentation' ([classes, H, W], or a record whose `out` is that), or None."""
    main = output.get("out") if isinstance(output, dict) else output
    if isinstance(main, list) and main and all(isinstance(n, int) for n in main):
        return {1: "classification", 3: "segmentation"}.get(len(main))
    return None


def output_problem(config: TrainConfig, output, shape: list[int]) -> tuple[str, tuple] | None:
    """What in the train section cannot work with the model's output (from the analysis), as
    (message, path into the document): the task the output is for against the dataset, a
    segmenter's output size against its input (the masks'), the loss weights of a record's
    outputs against its keys, class weights against the classes."""
    task = task_of(output)
    segmenting = config.dataset.name in SEGMENTATION_DATASETS
    shown = _form_text(output)
    if task is None:
        return (f"the trainer trains a model whose output is class scores [classes] or per-pixel scores [classes, "
                f"H, W] (or a record with `out`); this one gives {shown}"), ("train",)
    if task == "segmentation" and not segmenting:
        return (f"the spec outputs per-pixel scores {shown} (segmentation), but train.dataset {config.dataset.name} "
                f"labels whole images; use a segmentation dataset ({', '.join(SEGMENTATION_DATASETS)})"), \
            ("train", "dataset", "name")
    if task == "classification" and segmenting:
        return (f"train.dataset {config.dataset.name} labels every pixel, but the spec outputs {shown}, scores per "
                f"image; end it with per-pixel scores [classes, H, W]"), ("train", "dataset", "name")
    if task == "classification":   # the loss takes one tensor of scores (records are for a segmenter's aux)
        return None if not isinstance(output, dict) else (
            f"the trainer trains a classifier on one tensor of class scores [classes]; this one gives a record "
            f"{shown}: make the scores the spec's only output", ("train",))
    records = output if isinstance(output, dict) else {}
    main = records.get("out", output)
    if list(main[1:]) != list(shape[1:]):
        which = "out " if records else ""
        return (f"the spec's output {which}{main} is not the input's size {shape[1]}x{shape[2]}, which the masks "
                f"have; end the spec with a resize like the input (resize: {{like: input, mode: bilinear}})"), \
            ("train", "dataset")
    weights = config.loss.outputs
    if weights is not None:
        if not records:
            return (f"train.loss.outputs weighs a record's outputs, but the spec outputs one tensor {shown}",
                    ("train", "loss", "outputs"))
        for key in weights:
            if key not in records:
                return (f"train.loss.outputs names {key!r}, but the spec's outputs are {', '.join(records)}",
                        ("train", "loss", "outputs", key))
        for key, value in records.items():
            if weights.get(key) and (not isinstance(value, list) or list(value[1:]) != list(main[1:])):
                return (f"output {key} {_form_text(value)} cannot be weighed against the masks "
                        f"({main[1]}x{main[2]})"), ("train", "loss", "outputs", key)
    classes = len(config.dataset.classes) if config.dataset.name == "segmentation_folder" else DIGIT_CANVAS_CLASSES
    if main[0] < classes:
        return (f"the spec's output has {main[0]} channels (class scores) but train.dataset has {classes} classes",
                ("train", "dataset"))
    if config.loss.class_weights is not None and len(config.loss.class_weights) != classes:
        return (f"{len(config.loss.class_weights)} class weights for {classes} classes", ("train", "loss", "class_weights"))
    return None


def _form_text(form) -> str:
    if isinstance(form, dict):
        return "{" + ", ".join(f"{k}: {_form_text(v)}" for k, v in form.items()) + "}"
    return str(form)


def field_reference(model: type[BaseModel] = TrainConfig, prefix: str = "train") -> list[tuple[str, str, str, str]]:
    """(path, type, default, description) for every field, nested models expanded.
    Union members are listed under their `name`, e.g. `train.optimizer[adam].betas`."""
    rows: list[tuple[str, str, str, str]] = []
    for fname, info in model.model_fields.items():
        path = f"{prefix}.{fname}"
        members = _models_in(info.annotation)
        if len(members) > 1:  # a union told apart by `name`: list its choices
            choices = "|".join(_literal_text(m.model_fields["name"].annotation) for m in members)
            default = info.get_default(call_default_factory=True)
            rows.append((f"{path}.name", choices, repr(getattr(default, "name", None)), info.description or ""))
        if members:
            for member in members:
                tag = member.model_fields.get("name")
                label = path
                if tag is not None and len(members) > 1:
                    label = f"{path}[{_literal_text(tag.annotation)}]"
                rows.extend(r for r in field_reference(member, label) if not r[0].endswith(".name") or len(members) == 1)
            continue
        default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
        rows.append((path, _type_text(info.annotation), default, info.description or ""))
    return rows


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        for m in _models_in(arg):
            if m not in out:
                out.append(m)
    if not out and hasattr(annotation, "__origin__") and hasattr(annotation, "__metadata__"):
        out = _models_in(annotation.__origin__)
    return out


def _literal_text(annotation: Any) -> str:
    return "|".join(str(a) for a in getattr(annotation, "__args__", ()))


def _type_text(annotation: Any) -> str:
    if getattr(annotation, "__origin__", None) is Literal:
        return _literal_text(annotation)
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")
