"""`netspec predict`: the same answers as `netspec eval`, per image, and bad images reported
one line each while the rest go on."""
from __future__ import annotations

import json
import os

import pytest
import torch

import netspec
from conftest import ROOT, save_png, unblocked_after
from netspec.data.datasets import load_dataset, read_image
from netspec.document.train import DigitsData
from netspec.train.evaluate import evaluate_checkpoint
from netspec.train.loop import Job

DIGITS = ROOT / "specs" / "digits.yaml"


@pytest.fixture(scope="module")
def digits(tmp_path_factory, digits_ckpt):
    """A digits model and its test images written as 8x8 grayscale PNGs."""
    root = tmp_path_factory.mktemp("predict")
    test_x = load_dataset(DigitsData(), [1, 8, 8]).test_x
    images = root / "images"
    (images / "b").mkdir(parents=True)
    (images / "a").mkdir()
    for i, img in enumerate(test_x):  # split across two folders: the walk order is their sorted order
        save_png(img, str(images / ("a" if i < 100 else "b") / f"{i:04d}.png"))
    return digits_ckpt, images, len(test_x)


def test_predict_agrees_with_eval_image_by_image(cli, digits):
    ckpt, images, n = digits
    expected = evaluate_checkpoint(Job.from_spec(netspec.load(DIGITS)), ckpt, device="cpu", per_image=True)["predictions"]
    r = cli("predict", DIGITS, "--ckpt", ckpt, images, "--json", "--top", "3")
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert [row["image"].rsplit("/", 1)[1] for row in rows] == [f"{i:04d}.png" for i in range(n)]
    assert [int(row["top"][0]["class"]) for row in rows] == expected
    assert all(len(row["top"]) == 3 and row["top"][0]["p"] >= row["top"][1]["p"] >= row["top"][2]["p"]
               for row in rows)
    # text output: one line per image, best class first
    r = cli("predict", DIGITS, "--init", ckpt, images / "a" / "0000.png", "--top", "1")
    assert r.code == 0 and r.out.count("\n") == 1 and r.out.startswith(f"{images / 'a' / '0000.png'}: {expected[0]} ")


def test_unreadable_images_are_one_line_each_and_the_rest_go_on(cli, digits, tmp_path):
    ckpt, images, _ = digits
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    r = cli("predict", DIGITS, "--ckpt", ckpt, images / "a" / "0001.png", tmp_path / "broken.png",
            tmp_path / "missing.jpg", images / "a" / "0002.png", "--json")
    assert r.code == 2
    assert [json.loads(line)["image"].rsplit("/", 1)[1] for line in r.out.splitlines()] == ["0001.png", "0002.png"]
    errors = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "broken.png" in errors[0] and "missing.jpg" in errors[1]
    r = cli("predict", DIGITS, "--ckpt", ckpt, tmp_path / "empty_dir_does_not_exist_either")
    assert r.code == 2
    (tmp_path / "empty").mkdir()
    r = cli("predict", DIGITS, "--ckpt", ckpt, tmp_path / "empty")
    assert r.code == 2 and r.err.strip().splitlines()[-1].startswith("error: no images under")


def test_photos_of_another_size_and_mode_are_prepared_as_evaluation_prepares_them(cli, digits, tmp_path, monkeypatch):
    """32x32 RGB files: predict reads them as the spec's 1x8x8 exactly as `netspec eval` reads an
    image folder with resize: true (grayscale, antialiased resize, the checkpoint's normalization)."""
    ckpt, images, _ = digits
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    data = load_dataset(DigitsData(), [1, 8, 8])
    test_x, labels = data.test_x, data.test_y
    assert set(labels[:60].tolist()) == set(range(10))
    for split in ("train", "test"):
        for i in range(60):
            folder = tmp_path / "folder" / split / str(int(labels[i]))
            folder.mkdir(parents=True, exist_ok=True)
            big = torch.nn.functional.interpolate(test_x[i][None].float(), size=(32, 32), mode="bilinear")[0]
            rgb = torch.stack([big[0], big[0] * 0.9, big[0] * 0.8]).round().clamp(0, 255).to(torch.uint8)
            save_png(rgb, str(folder / f"{i:04d}.png"))
    dataset = f"train.dataset={{name: imagefolder, root: {tmp_path / 'folder'}, resize: true}}"
    job = Job.from_spec(netspec.load(DIGITS, overrides=[dataset]))
    expected = evaluate_checkpoint(job, ckpt, device="cpu", per_image=True)["predictions"]
    r = cli("predict", DIGITS, "--ckpt", ckpt, tmp_path / "folder" / "test", "--json", "--top", "1")
    assert r.code == 0, r.err
    assert [json.loads(line)["top"][0]["index"] for line in r.out.splitlines()] == expected


# -- issue 23: precision, non-finite outputs, names reaching the terminal, images that broke it --------------
def _altered(ckpt, path, **fields):
    """A copy of the digits checkpoint with some fields replaced (a crafted or damaged file)."""
    state = torch.load(ckpt, weights_only=True)
    for key, value in fields.items():
        state[key] = value(state[key]) if callable(value) else value
    torch.save(state, path)
    return path


def test_precision_is_said_and_fp32_gives_the_exported_file_s_numbers(cli, digits, tmp_path):
    """predict ran the spec's bf16 while exported files are fp32: the probabilities differed
    (0.50395 vs 0.50648) and nothing said why."""
    import onnxruntime

    ckpt, images, _ = digits
    image = images / "a" / "0003.png"
    bf16 = ["--set", "train.precision=bf16"]
    assert cli("export", DIGITS, "--ckpt", ckpt, *bf16, "-o", tmp_path / "d.onnx").code == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["netspec"])
    assert meta["precision"] == "fp32"
    x = (read_image(str(image), 1, (8, 8)).float().numpy() / 255 - meta["mean"][0]) / meta["std"][0]
    logits = torch.from_numpy(session.run(None, {"input": x[None]})[0])
    exported = logits.softmax(1)[0].max().item()

    r = cli("predict", DIGITS, "--ckpt", ckpt, *bf16, image, "--json", "--top", "1")
    assert r.code == 0 and r.err.splitlines()[0] == (
        "predict: bf16 autocast (the spec's train.precision); an exported file computes in fp32, so its "
        "probabilities differ slightly: --precision fp32 gives its numbers")
    low = json.loads(r.out)["top"][0]["p"]
    r = cli("predict", DIGITS, "--ckpt", ckpt, *bf16, "--precision", "fp32", image, "--json", "--top", "1")
    assert r.code == 0 and "autocast" not in r.err
    assert json.loads(r.out)["top"][0]["p"] == pytest.approx(exported, abs=1e-5)
    assert abs(low - exported) > 1e-5  # bf16's are another number, as the note says
    r = cli("eval", DIGITS, "--ckpt", ckpt, *bf16, "--precision", "fp32", "--json")
    assert r.code == 0 and json.loads(r.out)["precision"] == "fp32" and "autocast" not in r.err
    r = cli("eval", DIGITS, "--ckpt", ckpt, "--precision", "bf16", "--json")
    assert json.loads(r.out)["precision"] == "bf16" and r.err.startswith("eval: bf16 autocast (--precision)")


def test_a_non_finite_output_is_one_line_never_nan_json(cli, digits, tmp_path):
    """Finite weights that overflow: `predict --json` printed `"p": NaN` (not JSON) with exit 0."""
    ckpt, images, _ = digits
    last = [k for k in torch.load(ckpt, weights_only=True)["model"] if k.endswith("weight")][-1]
    huge = _altered(ckpt, tmp_path / "huge.pt", model=lambda m: {**m, last: torch.full_like(m[last], 3e38)})
    r = cli("predict", DIGITS, "--ckpt", huge, images / "a" / "0000.png", images / "a" / "0001.png", "--json")
    assert r.code == 1 and r.out == ""
    errors = r.err.strip().splitlines()[1:]  # after the init report
    assert errors == [f"error: the model's output for {images / 'a' / name} is not finite (NaN or inf) at "
                      f"train.precision fp32; no prediction" for name in ("0000.png", "0001.png")]
    r = cli("eval", DIGITS, "--ckpt", huge, "--json")  # gave an accuracy (7.80%) with exit 0
    assert r.code == 1 and r.out == "" and r.err.strip().splitlines()[-1] == (
        f"{DIGITS}: check failed: the model's output on the test set is not finite (NaN or inf) at "
        f"train.precision fp32; no accuracy")


def test_normalization_that_cannot_work_is_refused(cli, digits, tmp_path):
    """A 3-channel mean for a 1-channel model crashed; `std: [1e-300]` passed the positive check
    and made every input NaN."""
    ckpt, images, _ = digits
    image = images / "a" / "0000.png"
    rgb = _altered(ckpt, tmp_path / "rgb.pt", mean=[0.5] * 3, std=[0.2] * 3)
    for command in (["predict", DIGITS, "--ckpt", rgb, image], ["export", DIGITS, "--ckpt", rgb, "-o", tmp_path / "x.pt2"]):
        r = cli(*command)
        assert r.code == 2 and r.err.strip().splitlines() == [
            f"error: {rgb} (netspec checkpoint, spec 'digits-cnn', epoch 1) normalizes 3 channels; the spec's input has 1"]
    tiny = _altered(ckpt, tmp_path / "tiny.pt", std=[1e-300])
    r = cli("predict", DIGITS, "--ckpt", tiny, image)
    assert r.code == 2 and "'std' is not a list of positive numbers (at least 1e-06)" in r.err
    torch.save(torch.load(ckpt, weights_only=True)["model"], tmp_path / "state.pt")
    r = cli("predict", DIGITS, "--init", tmp_path / "state.pt", image,
            "--set", "train.normalization={mean: [0.5], std: [1e-300]}")
    assert r.code == 2 and "std must be at least 1e-06 (pixels are divided by it" in r.err


def test_names_reach_the_terminal_escaped(cli, digits, tmp_path):
    """Class names and file names with ESC, BEL or a newline forged prediction lines."""
    ckpt, images, _ = digits
    evil = _altered(ckpt, tmp_path / "evil.pt", classes=[f"c{i}\n\x1b[31mforged: 9 100.0%\x07" for i in range(10)])
    name = tmp_path / "x\n\x1b[2Jy.png"
    name.write_bytes((images / "a" / "0000.png").read_bytes())
    r = cli("predict", DIGITS, "--ckpt", evil, name, "--top", "2")
    assert r.code == 0 and r.out.count("\n") == 1 and r.out[:-1].isprintable(), repr(r.out)
    assert "x\\n\\x1b[2Jy.png: c" in r.out and "\\n\\x1b[31mforged" in r.out
    r = cli("predict", DIGITS, "--ckpt", evil, name, "--json")
    assert r.out.count("\n") == 1 and json.loads(r.out)["image"] == str(name)  # JSON escapes them itself
    r = cli("predict", DIGITS, "--ckpt", evil, tmp_path / "missing\x1b[2J.png")
    assert r.code == 2 and r.err.strip().endswith("missing\\x1b[2J.png: No such file or directory")


def test_images_that_broke_predict(cli, digits, tmp_path):
    """A FIFO named .png in a folder blocked; 16- and 8-bit images in one call crashed (and 16-bit
    ones were read as all-white); a GIF into a grayscale model crashed; an animated GIF too."""
    from PIL import Image

    ckpt, images, _ = digits
    folder = tmp_path / "photos"
    folder.mkdir()
    pixels = read_image(str(images / "a" / "0005.png"), 1, None)[0].numpy()
    Image.fromarray(pixels).save(folder / "a8.png")
    Image.fromarray(pixels.astype("uint16") * 257).save(folder / "b16.png")
    Image.fromarray(pixels).convert("RGB").save(folder / "c.gif")
    frames = [Image.fromarray(pixels), Image.fromarray(255 - pixels)]
    frames[0].save(folder / "d_animated.gif", save_all=True, append_images=frames[1:])
    os.mkfifo(folder / "e_fifo.png")
    with unblocked_after(folder / "e_fifo.png"):
        r = cli("predict", DIGITS, "--ckpt", ckpt, folder, "--json", "--top", "3")
    assert r.code == 2
    rows = {os.path.basename(json.loads(line)["image"]): json.loads(line)["top"] for line in r.out.splitlines()}
    assert list(rows) == ["a8.png", "b16.png", "c.gif"] and rows["a8.png"] == rows["b16.png"] == rows["c.gif"]
    assert r.err.strip().splitlines()[1:] == [
        f"error: cannot read image {folder / 'd_animated.gif'}: an animated GIF (8x8); netspec reads still images "
        f"(save the frame you mean as a PNG)",
        f"error: cannot read image {folder / 'e_fifo.png'}: this is a FIFO, not a regular file"]
