"""Semantic segmentation in the generic trainer: the task chosen from the spec's output, the
datasets (the offline digits canvas; a folder of images and masks, with every bad input one
line), the joint augmentation of image and mask, the per-pixel loss with ignored pixels and
per-output weights, the measures (pixel accuracy, per-class IoU, mIoU), and eval / predict /
sweep / --init on a segmentation model."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import netspec
from conftest import ROOT
from netspec.data.masks import MaskLoader, digits_canvas, read_mask
from netspec.document.train import TrainConfig
from netspec.train.task import metrics, per_class_iou

UNET = ROOT / "specs" / "unet_digits.yaml"
SMALL = ["train.dataset.train_size=96", "train.dataset.test_size=24", "train.epochs=1", "train.batch_size=16",
         "vars.w=4"]


def tiny_unet(extra: str = "", train: str = "", outputs: str = "") -> str:
    """A U-Net-like graph small enough to train in a second; `outputs` makes it a record."""
    return f"""\
netspec: 1
name: tiny-seg
input: [1, 16, 16]
graph:
  nodes:
    enc: {{conv: {{out: 4, k: 3, padding: 1}}}}
    down: {{maxpool: 2}}
    mid: {{conv: {{out: 8, k: 3, padding: 1}}}}
    up: {{resize: {{like: enc}}}}
    cat: {{from: [enc, up], merge: concat}}
    head: {{conv: {{out: 11, k: 1}}}}
    auxc: {{from: mid, conv: {{out: 11, k: 1}}}}
    aux: {{resize: {{like: input}}}}
{extra}  {outputs or 'outputs: head'}
train:
  dataset: {{name: digits_canvas, size: 16, train_size: 48, test_size: 16}}
  epochs: 1
  batch_size: 16
  device: cpu
{train}"""


# -- the digits canvas -----------------------------------------------------------------------
def test_the_digits_canvas_is_deterministic_and_labels_every_pixel():
    cfg = TrainConfig.model_validate({"dataset": {"name": "digits_canvas", "size": 32, "train_size": 40, "test_size": 10}})
    a, b = digits_canvas(cfg.dataset, [1, 32, 32], None), digits_canvas(cfg.dataset, [1, 32, 32], None)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    assert a.classes[0] == "background" and len(a.classes) == 11
    values = set(a.train_y.unique().tolist())
    assert 0 in values and 255 in values and values - {0, 255} and max(values - {255}) <= 10
    ink = a.train_x[:, 0].float()
    assert ink[a.train_y == 0].mean() < 40 < ink[(a.train_y > 0) & (a.train_y < 255)].mean()   # digits are bright


# -- the loader: image and mask get the same geometry ------------------------------------------
def _coded(n: int, h: int, w: int, block: int = 1):
    """Masks of random classes in blocks, and images whose pixels are their class * 20."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (n, h // block, w // block), generator=g, dtype=torch.uint8)
    y = y.repeat_interleave(block, 1).repeat_interleave(block, 2)
    return (y * 20).unsqueeze(1), y


def test_crop_and_flip_move_image_and_mask_alike():
    """An image whose pixels encode their mask's: after a random crop (padded where the image is
    smaller) and flip the two still agree pixel for pixel; the padding is 0 in the image and the
    ignore index in the mask."""
    x, y = _coded(6, 12, 14)
    loader = MaskLoader(x, y, batch_size=3, device="cpu", mean=[0.0], std=[1.0], train=True, seed=1,
                        crop=(13, 16), flip=True)
    flipped = 0
    for xb, yb, _ in loader.epoch(0):
        assert xb.shape == (3, 1, 13, 16) and yb.shape == (3, 13, 16)
        pixels = (xb[:, 0] * 255).round()
        ignored = yb == 255
        assert bool(ignored.any()) and torch.equal(pixels[ignored], torch.zeros_like(pixels[ignored]))
        assert torch.equal(pixels[~ignored], yb[~ignored].float() * 20)
        flipped += sum(not any(torch.equal(yb[i, :12, :14], y[j]) for j in range(6)) for i in range(3))
    assert flipped   # some were mirrored (or shifted): not every crop is an original


def test_scale_resamples_masks_nearest():
    """Scaled by a random factor, a mask keeps only its own classes (nearest) and the image still
    agrees with it where the blocks are wide (bilinear blends only at block edges)."""
    x, y = _coded(4, 32, 32, block=8)
    loader = MaskLoader(x, y, batch_size=2, device="cpu", mean=[0.0], std=[1.0], train=True, seed=2,
                        scale=(0.6, 1.8), crop=(32, 32))
    for xb, yb, _ in loader.epoch(0):
        assert set(yb.unique().tolist()) <= set(y.unique().tolist()) | {255}
        kept = yb != 255
        same = ((xb[:, 0] * 255).round()[kept] - yb[kept].float() * 20).abs() < 1
        assert same.float().mean() > 0.7


def test_evaluation_batches_keep_each_image_at_its_size():
    xs = [torch.zeros(1, 8, 8, dtype=torch.uint8), torch.zeros(1, 8, 8, dtype=torch.uint8),
          torch.zeros(1, 5, 7, dtype=torch.uint8)]
    ys = [torch.zeros(8, 8, dtype=torch.uint8), torch.ones(8, 8, dtype=torch.uint8), torch.zeros(5, 7, dtype=torch.uint8)]
    loader = MaskLoader(xs, ys, batch_size=4, device="cpu", mean=[0.0], std=[1.0], train=False)
    batches = list(loader.epoch(0))
    assert [(tuple(x.shape), v) for x, _, v in batches] == [((2, 1, 8, 8), 2), ((1, 1, 5, 7), 1)]


# -- the measures -------------------------------------------------------------------------------
def test_miou_is_the_mean_over_classes_in_target_or_prediction():
    confusion = torch.tensor([[8, 2, 0], [1, 9, 0], [0, 0, 0]])   # class 2 in neither: no IoU
    iou = per_class_iou(confusion)
    assert iou[0] == pytest.approx(8 / 11) and iou[1] == pytest.approx(9 / 12) and iou[2] is None
    m = metrics(confusion, "segmentation")
    assert m["test_miou"] == pytest.approx((8 / 11 + 9 / 12) / 2) and m["test_acc"] == pytest.approx(17 / 20)


def test_the_loss_ignores_pixels_and_weighs_outputs(write):
    from netspec.data.masks import MaskData
    from netspec.train.loop import Job
    from netspec.train.task import make_task
    spec = netspec.load(write(tiny_unet(outputs="outputs: {out: head, aux: aux}", train="  loss: {outputs: {out: 1.0, aux: 0.25}}\n")))
    job = Job.from_spec(spec)
    data = MaskData("m", [], [], [], [], [str(i) for i in range(11)])
    task = make_task(job, data, spec.train)
    out = {"out": torch.randn(2, 11, 4, 4), "aux": torch.randn(2, 11, 4, 4)}
    y = torch.randint(0, 11, (2, 4, 4))
    y[0, 0, 0] = 255
    keep = y != 255
    ce = lambda z: torch.nn.functional.cross_entropy(z.permute(0, 2, 3, 1)[keep], y[keep])   # noqa: E731
    assert task.loss(out, y).item() == pytest.approx((ce(out["out"]) + 0.25 * ce(out["aux"])).item(), rel=1e-6)


# -- static checks: the output against the data and the loss -----------------------------------------
@pytest.mark.parametrize("edit,message", [
    (("    head: {conv: {out: 11, k: 1}}", "    head: {conv: {out: 11, k: 2, stride: 2}}"),
     "the spec's output [11, 8, 8] is not the input's size 16x16, which the masks have; end the spec with a resize like the input"),
    (("  dataset: {name: digits_canvas, size: 16, train_size: 48, test_size: 16}", "  dataset: {name: digits}"),
     "train.dataset digits labels whole images; use a segmentation dataset"),
    (("  device: cpu", "  device: cpu\n  loss: {outputs: {auxx: 0.5}}"), "train.loss.outputs weighs a record's outputs, but the spec outputs one tensor"),
    (("    head: {conv: {out: 11, k: 1}}", "    head: {conv: {out: 7, k: 1}}"),
     "the spec's output has 7 channels (class scores) but train.dataset has 11 classes"),
])
def test_a_train_section_that_cannot_train_the_output_is_one_located_line(cli, write, edit, message):
    path = write(tiny_unet().replace(*edit))
    for command in ("check", "train"):
        run = cli(command, path, *(["--out", str(path.parent / "run")] if command == "train" else []))
        assert run.code == 2 and message in run.err and run.err.startswith(f"{path}:"), run.err
        assert len(run.err.strip().splitlines()) == 1


def test_record_output_weights_are_checked_against_its_keys(cli, write):
    path = write(tiny_unet(outputs="outputs: {out: head, aux: aux}", train="  loss: {outputs: {out: 1.0, auxx: 0.5}}\n"))
    run = cli("check", path)
    assert run.code == 2 and "train.loss.outputs names 'auxx', but the spec's outputs are out, aux" in run.err


@pytest.mark.parametrize("outputs", ["{out: head}", "{out: head, aux: head}"])
def test_a_classifier_that_outputs_a_record_is_refused_in_one_located_line(cli, write, outputs):
    # a record of class-score vectors: the trainer trains one tensor of class scores (was KeyError: 0, exit 3)
    path = write(f"""\
netspec: 1
name: record-classifier
input: [1, 8, 8]
graph:
  nodes:
    flat: {{flatten: {{}}}}
    head: {{linear: {{out: 10}}}}
  outputs: {outputs}
train:
  dataset: {{name: digits}}
  epochs: 1
  device: cpu
""")
    for command in ("check", "train"):
        run = cli(command, path, *(["--out", str(path.parent / "run")] if command == "train" else []))
        assert run.code == 2 and "one tensor of class scores" in run.err and run.err.startswith(f"{path}:"), run.err
        assert len(run.err.strip().splitlines()) == 1


# -- training end to end -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """unet_digits, shrunk: 96 training canvases, one epoch; trained twice with one seed."""
    from netspec.cli import main
    runs = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"unet{i}")
        assert main(["train", str(UNET), "--out", str(out / "run"), "--quiet", *[a for s in SMALL for a in ("--set", s)]]) == 0
        runs.append(out / "run")
    return runs


def test_a_segmentation_run_reports_miou_and_is_reproducible(trained):
    first, second = trained
    a, b = (json.loads((run / "summary.json").read_text()) for run in trained)
    assert a["task"] == "segmentation" and 0 <= a["test_miou"] <= 1 and a["best_test_miou"] == a["test_miou"]
    for key in ("test_miou", "test_acc", "final_train_loss"):
        assert a[key] == b[key], key   # seeded: the same run twice gives the same figures
    rows = (first / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:8] == ["epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_miou"]
    report = (first / "report.md").read_text()
    assert "## Per-class IoU and accuracy" in report and "| background |" in report
    for name in ("predictions.png", "curves.png", "confusion.png", "best.pt"):
        assert (first / name).is_file(), name
    assert torch.load(first / "best.pt", weights_only=True)["task"] == "segmentation"


def test_eval_and_predict_on_a_segmentation_checkpoint(cli, trained, tmp_path):
    ckpt = trained[0] / "best.pt"
    overrides = [a for s in SMALL for a in ("--set", s)]
    run = cli("eval", UNET, "--ckpt", ckpt, "--json", *overrides)
    assert run.code == 0, run.err
    result = json.loads(run.out)
    assert {"miou", "pixel_accuracy", "per_class_iou"} <= set(result) and len(result["per_class_iou"]) == 11
    summary = json.loads((trained[0] / "summary.json").read_text())
    assert result["miou"] == pytest.approx(summary["test_miou"])
    image = tmp_path / "images" / "canvas.png"
    image.parent.mkdir()
    Image.fromarray(np.full((48, 40), 30, np.uint8)).save(image)   # another size than the spec's input
    run = cli("predict", UNET, "--ckpt", ckpt, image.parent, "--out", tmp_path / "masks", "--json", *overrides)
    assert run.code == 0, run.err
    line = json.loads(run.out.strip().splitlines()[0])
    with Image.open(line["mask"]) as mask:
        assert mask.mode == "P" and mask.size == (40, 48) and line["size"] == [48, 40]
    assert sum(a["fraction"] for a in line["areas"]) == pytest.approx(1.0)
    with Image.open(line["overlay"]) as overlay:
        assert overlay.mode == "RGB"
    assert cli("predict", UNET, "--ckpt", ckpt, image, *overrides).code == 2   # masks need --out


def test_a_sweep_of_segmentation_runs_compares_miou(cli, tmp_path):
    out = tmp_path / "sweep"
    run = cli("sweep", UNET, "--grid", "vars.w=2,4", "--out", out, *[a for s in SMALL if "vars.w" not in s for a in ("--set", s)])
    assert run.code == 0, run.err
    md = (out / "results.md").read_text()
    assert "test mIoU" in md and "## Per-class test IoU" in md


# -- the folder dataset and what breaks it ------------------------------------------------------------
def _folder(root, sizes=((12, 10), (12, 10)), classes=3):
    for split in ("train", "test"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            Image.fromarray(np.full((h, w), 40 * i, np.uint8)).save(root / split / "images" / f"im{i}.png")
            mask = np.zeros((h, w), np.uint8)
            mask[: h // 2] = i % classes
            mask[0, 0] = 255
            Image.fromarray(mask).save(root / split / "masks" / f"im{i}.png")
    return root


def _folder_spec(root, classes=3, input_size=(12, 10)) -> str:
    return (f"netspec: 1\nname: f\ninput: [1, {input_size[0]}, {input_size[1]}]\ngraph:\n  nodes:\n"
            f"    a: {{conv: {{out: {classes}, k: 3, padding: 1}}}}\ntrain:\n"
            f"  dataset: {{name: segmentation_folder, root: {root}, classes: [{', '.join(f'c{i}' for i in range(classes))}]}}\n"
            f"  augmentation: {{crop: 8, scale: [0.8, 1.2], flip: true}}\n"
            f"  epochs: 1\n  batch_size: 2\n  device: cpu\n")


def test_a_folder_of_images_and_masks_trains(cli, write, tmp_path):
    root = _folder(tmp_path / "data", sizes=((12, 10), (9, 14), (12, 10)))
    run = cli("train", write(_folder_spec(root)), "--out", tmp_path / "run", "--quiet")
    assert run.code == 0, run.err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["test_images"] == 3


def _bad_png_header(path, width, height):
    """A small PNG file whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    idat = zlib.compress(b"\x00" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.parametrize("breakage,message", [
    ("missing", "has no mask"),
    ("size", "is 10x12 but its mask is 11x12"),
    ("index", "has class index 7, but train.dataset.classes names 3 classes (0..2; 255 is ignored)"),
    ("rgb", "has RGB pixels: a mask holds class indices"),
    ("empty", "cannot read mask"),
    ("bomb", "exceeds limit"),
    ("orphans", "masks in"),
])
def test_every_bad_input_of_the_folder_is_one_line_and_nothing_trains(cli, write, tmp_path, breakage, message):
    root = _folder(tmp_path / "data")
    masks = root / "train" / "masks"
    if breakage == "missing":
        (masks / "im1.png").unlink()
    elif breakage == "size":
        Image.fromarray(np.zeros((12, 11), np.uint8)).save(masks / "im1.png")
    elif breakage == "index":
        Image.fromarray(np.full((12, 10), 7, np.uint8)).save(masks / "im1.png")
    elif breakage == "rgb":
        Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(masks / "im1.png")
    elif breakage == "empty":
        (masks / "im1.png").write_bytes(b"")
    elif breakage == "bomb":
        _bad_png_header(masks / "im1.png", 60000, 60000)
    else:   # a mask folder of 10,000 files for the images there are
        for i in range(10_000):
            (masks / f"extra{i}.png").touch()
    run = cli("train", write(_folder_spec(root)), "--out", tmp_path / "run", "--quiet")
    assert run.code == 2 and message in run.err, run.err
    assert len(run.err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "last.pt").exists()


def test_read_mask_takes_palette_pngs(tmp_path):
    path = tmp_path / "p.png"
    im = Image.fromarray(np.array([[0, 1], [2, 255]], np.uint8), mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    im.save(path)
    assert read_mask(str(path), 3).tolist() == [[0, 1], [2, 255]]


# -- the schedule and weights from a classifier ---------------------------------------------------------
def test_the_poly_schedule_is_torchvisions():
    from netspec.train.optim import lr_factor
    cfg = TrainConfig.model_validate({"schedule": {"name": "poly"}})
    factor = lr_factor(cfg.schedule, 10, 3)
    assert [round(factor(s), 6) for s in (0, 15, 29)] == [1.0, round(0.5 ** 0.9, 6), round((1 / 30) ** 0.9, 6)]


def test_init_prefix_loads_a_classifier_into_a_backbone(cli, write, tmp_path):
    classifier = write("netspec: 1\nname: c\ninput: [1, 16, 16]\nlayers:\n  - conv: {out: 4, k: 3, padding: 1, name: c1}\n"
                       "  - relu\n  - avgpool: global\n  - flatten\n  - linear: {out: 3, name: fc}\n", "c.yaml")
    model = netspec.build(classifier)
    torch.save(model.state_dict(), tmp_path / "c.pt")
    seg = write(tiny_unet().replace("    enc: {conv: {out: 4, k: 3, padding: 1}}",
                                    "    enc: {body: [conv: {out: 4, k: 3, padding: 1, name: c1}, relu]}"), "seg.yaml")
    run = cli("train", seg, "--out", tmp_path / "run", "--quiet", "--init", tmp_path / "c.pt", "--init-prefix", "enc.",
              "--init-skip", "enc.fc.*", "--set", "train.epochs=1")
    assert run.code == 0, run.err
    assert "as the model's enc.* (--init-prefix)" in run.err and "skipped enc.fc.weight" in run.err


def test_vocs_layout_is_one_set_away(cli, write, tmp_path):
    """images/ and masks/ holding every image, and lists naming each split's stems (VOC's
    JPEGImages, SegmentationClass, ImageSets/Segmentation/*.txt)."""
    root = tmp_path / "VOC"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.full((12, 10), 30 * i, np.uint8)).save(root / "JPEGImages" / f"2007_{i}.jpg")
        if i < 4:   # the last image has no mask (VOC has images outside the segmentation set)
            Image.fromarray(np.full((12, 10), i % 3, np.uint8)).save(root / "SegmentationClass" / f"2007_{i}.png")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_0\n2007_1\n2007_2\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_3\n")
    spec = write(_folder_spec(tmp_path / "unused"))
    voc = ("train.dataset={name: segmentation_folder, root: " + str(root) + ", classes: [c0, c1, c2], images: JPEGImages, "
           "masks: SegmentationClass, train_list: ImageSets/Segmentation/train.txt, test_list: ImageSets/Segmentation/val.txt}")
    run = cli("train", spec, "--out", tmp_path / "run", "--quiet", "--set", voc)
    assert run.code == 0, run.err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["train_images"], summary["test_images"]) == (3, 1)


def test_the_zoos_recipe_trains_on_vocs_layout(cli, tmp_path):
    """specs/lraspp_mobilenet_v3_large.yaml's train: section (torchvision's recipe, VOC's layout):
    --set train.dataset.root is the whole command (here at a small size, one step)."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 255, (40, 44, 3), dtype=np.uint8)
    for i in range(3):
        Image.fromarray(rgb).save(root / "JPEGImages" / f"im{i}.jpg")
        mask = np.zeros((40, 44), np.uint8)
        mask[10:30, 10:30] = 15   # a person
        mask[10, :] = 255
        Image.fromarray(mask).save(root / "SegmentationClass" / f"im{i}.png")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("im0\nim1\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("im2\n")
    run = cli("train", ROOT / "specs" / "lraspp_mobilenet_v3_large.yaml", "--out", tmp_path / "run", "--quiet",
              "--set", f"train.dataset.root={root}", "--set", "input=[3,32,32]", "--set", "train.augmentation.crop=32",
              "--set", "train.batch_size=2", "--set", "train.epochs=1", "--set", "train.device=cpu")
    assert run.code == 0, run.err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"] == "segmentation" and summary["train_images"] == 2


def test_predict_refuses_a_segmenter_that_cannot_run_one_image_before_building_it(cli, write, tmp_path, monkeypatch):
    """As `predict` does for a classifier (tests/test_export.py): masks are predicted one image at a
    time, but a model too large for the machine is one line, not an allocation."""
    import netspec.budget
    import netspec.deploy.predict

    monkeypatch.setattr(netspec.budget, "physical_memory", lambda: 16 * 2**30)
    monkeypatch.setattr(netspec.deploy.predict, "physical_memory", lambda: 16 * 2**30)
    monkeypatch.setattr(netspec, "build", lambda *a, **k: pytest.fail("built"))
    huge = write("netspec: 1\nname: huge\ninput: [1, 8, 8]\nlayers:\n  - conv: {out: 100000, k: 1}\n"
                 "  - conv: {out: 100000, k: 1}\n  - conv: {out: 11, k: 1}\n"
                 "train: {dataset: {name: digits_canvas}}\n")
    with torch.device("meta"):   # its weights' shapes, in a file of a few KB
        shapes = {"0.weight": torch.empty(100000, 1, 1, 1), "0.bias": torch.empty(100000),
                  "1.weight": torch.empty(100000, 100000, 1, 1), "1.bias": torch.empty(100000),
                  "2.weight": torch.empty(11, 100000, 1, 1), "2.bias": torch.empty(11)}
    torch.save(shapes, tmp_path / "huge.pt")
    run = cli("predict", huge, "--init", tmp_path / "huge.pt", "x.png", "--out", tmp_path / "masks")
    assert run.code == 2 and "running the model needs at least" in run.err and "refused before allocating" in run.err, run.err
    assert len(run.err.strip().splitlines()) == 1
