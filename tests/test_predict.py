"""`netspec predict`: the same answers as `netspec eval`, per image, and bad images reported
one line each while the rest go on."""
from __future__ import annotations

import json

import pytest
import torch

import netspec
from conftest import ROOT, save_png
from netspec.data.datasets import load_dataset
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
