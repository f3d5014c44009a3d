"""Datasets by name and the device-resident loader."""
import os

import pytest
import torch

from netspec.data.datasets import DataError, load_dataset
from netspec.data.gpu_loader import DeviceLoader, channel_stats
from netspec.document.train import TrainConfig


def dataset(**doc):
    return TrainConfig.model_validate({"dataset": doc}).dataset


def test_digits_is_embedded_and_split():
    data = load_dataset(dataset(name="digits"), [1, 8, 8])
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape[1:] == (1, 8, 8)
    assert len(data.train_x) + len(data.test_x) == 1797
    assert abs(len(data.test_x) / 1797 - 0.2) < 0.01
    assert data.classes == [str(i) for i in range(10)]
    assert int(data.train_x.max()) == 255 and set(data.train_y.tolist()) == set(range(10))


def test_synthetic_follows_the_spec_input():
    data = load_dataset(dataset(name="synthetic", train_size=10, test_size=5, classes=3), [2, 5, 7])
    assert data.train_x.shape == (10, 2, 5, 7) and data.test_x.shape == (5, 2, 5, 7)
    assert data.classes == ["class0", "class1", "class2"]


def test_input_shape_mismatch_names_both():
    with pytest.raises(DataError) as e:
        load_dataset(dataset(name="digits"), [3, 32, 32])
    msg = str(e.value)
    assert "[3, 32, 32]" in msg and "[1, 8, 8]" in msg and "\n" not in msg


def test_missing_torchvision_dataset_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(dataset(name="cifar10", root=str(tmp_path)), [3, 32, 32])
    msg = str(e.value)
    assert str(tmp_path) in msg and "download=true" in msg and "\n" not in msg


def _write_images(folder, classes, per_class, size=(6, 5)):
    from PIL import Image

    for c, cls in enumerate(classes):
        (folder / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (size[1], size[0]), (c * 60, i * 10, 7)).save(folder / cls / f"{i}.png")


def test_imagefolder_train_test_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    _write_images(tmp_path / "d" / "train", ["cat", "dog"], 3)
    _write_images(tmp_path / "d" / "test", ["cat", "dog"], 2)
    cfg = dataset(name="imagefolder", root=str(tmp_path / "d"))
    data = load_dataset(cfg, [3, 6, 5])
    assert data.classes == ["cat", "dog"] and data.train_x.shape == (6, 3, 6, 5) and data.test_x.shape == (4, 3, 6, 5)
    assert data.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    assert int(data.train_x[3, 0, 0, 0]) == 60  # dog's red channel, decoded exactly (PNG)
    cached = sorted(os.listdir(tmp_path / "cache"))
    assert len(cached) == 2
    again = load_dataset(cfg, [3, 6, 5])  # from the cache
    assert torch.equal(again.train_x, data.train_x)
    # a new image changes the folder's mtime: the cache is rebuilt, not reused stale
    from PIL import Image
    Image.new("RGB", (5, 6)).save(tmp_path / "d" / "train" / "cat" / "new.png")
    assert load_dataset(cfg, [3, 6, 5]).train_x.shape[0] == 7


def test_imagefolder_random_split_and_resize(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    _write_images(tmp_path / "flat", ["a", "b", "c"], 10, size=(12, 10))
    cfg = dataset(name="imagefolder", root=str(tmp_path / "flat"), split=0.8, resize=True)
    data = load_dataset(cfg, [1, 4, 4])
    assert data.train_x.shape == (24, 1, 4, 4) and data.test_x.shape == (6, 1, 4, 4)
    with pytest.raises(DataError, match="split=0.8"):
        load_dataset(dataset(name="imagefolder", root=str(tmp_path / "flat")), [1, 4, 4])


def _loader(x, y, **kw):
    args = dict(batch_size=4, device="cpu", mean=[0.0] * x.shape[1], std=[1.0] * x.shape[1], train=True, seed=5)
    args.update(kw)
    return DeviceLoader(x, y, **args)


def test_crop_and_flip_are_windows_of_the_padded_image():
    x = torch.randint(0, 256, (16, 2, 5, 6), dtype=torch.uint8)
    y = torch.arange(16)
    loader = _loader(x, y, crop_padding=2, padding_mode="zeros", flip=True)
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2)) / 255.0
    for xb, yb, _ in loader.epoch(0):
        for img, label in zip(xb, yb):
            src = padded[label]
            hits = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                    if torch.allclose((src.flip(2) if f else src)[:, dy:dy + 5, dx:dx + 6], img)
                    or (f and torch.allclose(src[:, dy:dy + 5, dx:dx + 6].flip(2), img))]
            assert hits, "every augmented image is a (mirrored) window of its padded source"


def test_epochs_are_reproducible_and_resumable_midway():
    x = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(20)
    a = [b[1].tolist() for b in _loader(x, y, crop_padding=1, flip=True).epoch(3)]
    b = [b[1].tolist() for b in _loader(x, y, crop_padding=1, flip=True).epoch(3)]
    assert a == b and len(a) == 5
    assert [bb[1].tolist() for bb in _loader(x, y).epoch(4)] != a
    skipped = list(_loader(x, y, crop_padding=1, flip=True).epoch(3, start_step=2))
    full = list(_loader(x, y, crop_padding=1, flip=True).epoch(3))
    assert all(torch.equal(s[0], f[0]) for s, f in zip(skipped, full[2:]))


def test_ranks_split_each_global_batch():
    x = torch.zeros((22, 1, 2, 2), dtype=torch.uint8)
    y = torch.arange(22)
    ranks = [_loader(x, y, batch_size=3, rank=r, world=2) for r in range(2)]
    assert len(ranks[0]) == 3  # 22 // (3 * 2), the ragged tail dropped
    seen = [yb.tolist() for r in ranks for _, yb, _ in r.epoch(0)]
    flat = sum(seen, [])
    assert len(flat) == len(set(flat)) == 18


def test_eval_pads_the_last_batch_and_normalizes():
    x = torch.full((5, 1, 2, 2), 255, dtype=torch.uint8)
    y = torch.arange(5)
    batches = list(_loader(x, y, train=False, mean=[0.5], std=[0.25]).epoch(0))
    assert [v for _, _, v in batches] == [4, 1] and batches[1][0].shape[0] == 4
    assert torch.allclose(batches[0][0], torch.full((4, 1, 2, 2), 2.0))


def test_channel_stats():
    x = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    mean, std = channel_stats(x, chunk=7)
    ref = x.double().div(255).transpose(0, 1).reshape(3, -1)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), ref.mean(1))
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), ref.std(1, unbiased=False))


def test_cutout_zeroes_one_square_per_image():
    x = torch.full((8, 2, 10, 10), 200, dtype=torch.uint8)
    y = torch.arange(8)
    loader = _loader(x, y, cutout=4, mean=[0.0, 0.0], std=[1.0, 1.0])
    for xb, _, _ in loader.epoch(0):
        zero = (xb == 0).all(1)  # (N, H, W): the square is cut from every channel
        for img in zero:
            rows, cols = img.any(1).nonzero().flatten(), img.any(0).nonzero().flatten()
            assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
            assert int(img.sum()) == len(rows) * len(cols)  # one rectangle (a square clipped at the border)
