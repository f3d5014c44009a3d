"""Issue 10, the trainer's side: settings that validated and then crashed, run folders and
checkpoints that could not be written or read, and what the hardware refuses — each is
one line (exit 2 for bad input, 1 for a run that cannot go on), refused before anything
is allocated where the analysis can tell."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from netspec.cli import main
from tests.train_helpers import tiny_spec


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_spec(epochs=1)))
    return str(path)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "Warning" not in err, err
    return lines[0]


# -- settings: refused statically (netspec check finds them too) or before allocation -------------
@pytest.mark.parametrize("sets, needle", [
    (["train.normalization.std=[0.5, 0.5]"], "2 values for the 3 channels"),
    (["train.augmentation.crop_padding=8"], "reflect padding of 8 needs images larger than 8"),
    (["train.augmentation={crop_padding: 1000000000, padding_mode: zeros}"], "larger than the 8x8 input"),
    (["train.eval_batch_size=100000000000"], "less than or equal to 16777216"),
    (["train.seed=-1"], "greater than or equal to 0"),
    (["train.seed=18446744073709551616"], "out of range"),
    (["train.cpu_threads=4294967296"], "less than or equal to 4096"),
    (["train.schedule={name: constant, warmup_epochs: .inf}"], "finite"),
    (["train.schedule={name: step, milestones: [.nan]}"], "finite"),
    (["train.schedule={name: step, milestones: [2]}"], "less than or equal to 1"),
    (["train.dataset.classes=1000000000"], "classes is at most train_size"),
    (["train.optimizer={name: adam, betas: [0.9, 1.0]}"], "less than 1"),
    (["train.optimizer={name: adam, betas: [0.9]}"], "at least 2 items"),
    (["input=[3, 100000, 100000]"], "more than the"),                         # activations
    (["layers.6.linear.out=1000000000"], "more than the"),                    # weights
    (["input=[48]", "layers=[linear: 4]"], "is not [C, H, W]"),
    (["layers=[flatten, {linear: {out: 4, frozen: true}}]"], "no trainable parameters (772 frozen)"),
    (["layers=[avgpool: global, flatten]"], "the model has no parameters"),
    (["layers=[flatten, linear: 8, bn, linear: 4]", "train.batch_size=1"], "batch norm over [8] sees one value per channel"),
])
def test_settings_that_crashed_are_one_line_exit_2(capsys, tiny, tmp_path, sets, needle):
    argv = ["train", tiny, "--out", tmp_path / "r", "--quiet"]
    for s in sets:
        argv += ["--set", s]
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert needle in one_line(err)
    assert not (tmp_path / "r" / "last.pt").exists()


def test_betas_can_be_set(capsys, tiny, tmp_path):
    code, _, err = run(capsys, "train", tiny, "--out", tmp_path / "r", "--quiet",
                       "--set", "train.optimizer={name: adam, betas: [0.8, 0.99]}")
    assert code == 0, err
    state = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.99)


def test_train_has_max_params(capsys, tiny, tmp_path):
    code, _, err = run(capsys, "train", tiny, "--out", tmp_path / "r", "--quiet", "--max-params", "100")
    assert code == 2 and "over --max-params 100" in one_line(err)


def test_cpu_allocation_failure_is_one_line(capsys, tiny, tmp_path, monkeypatch):
    import netspec.train.loop as loop

    def fail(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 6399999998976 bytes. Error code 12 (Cannot allocate memory)")
    monkeypatch.setattr(loop, "make_loaders", fail)
    code, _, err = run(capsys, "train", tiny, "--out", tmp_path / "r", "--quiet")
    assert code == 1 and "out of memory (5,960.5 GiB at once)" in one_line(err)


# -- run folders and checkpoints ---------------------------------------------------------------------
@pytest.mark.parametrize("where", ["file", "under_file", "/proc/netspec-run"])
def test_train_out_that_cannot_be_a_folder(capsys, tiny, tmp_path, where):
    (tmp_path / "file").write_text("")
    out = {"file": tmp_path / "file", "under_file": tmp_path / "file" / "run"}.get(where, where)
    code, _, err = run(capsys, "train", tiny, "--out", out, "--quiet")
    assert code == 2 and f"cannot use {out} as the run folder" in one_line(err)


def _second_last_pt_save(monkeypatch, disk):
    """Run the second save of last.pt (the end of epoch 2) on `disk(save)`: a context in
    which its writes fail as on a full disk."""
    from netspec.train import checkpoint

    real, saves = checkpoint.save, []

    def save(state, path):
        saves.append(os.path.basename(path))
        if saves.count("last.pt") != 2 or not str(path).endswith("last.pt"):
            return real(state, path)
        with disk():
            return real(state, path)
    monkeypatch.setattr(checkpoint, "save", save)


def _dev_full(monkeypatch):
    """Every write goes to /dev/full: ENOSPC at once."""
    from contextlib import contextmanager
    from netspec.train import checkpoint

    @contextmanager
    def disk():
        real = checkpoint.tempfile.mkstemp

        def mkstemp(dir, prefix, suffix):
            fd, name = real(dir=dir, prefix=prefix, suffix=suffix)
            os.close(fd)
            return os.open("/dev/full", os.O_WRONLY), name
        with monkeypatch.context() as m:
            m.setattr(checkpoint.tempfile, "mkstemp", mkstemp)
            yield
    return disk


def _room_for(size):
    """Files may grow to `size` bytes (RLIMIT_FSIZE): the write that crosses it writes part of
    its buffer, the next fails, as on a disk that fills up in the middle of a checkpoint."""
    import resource
    import signal
    from contextlib import contextmanager

    @contextmanager
    def disk():
        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, limits[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, limits)
            signal.signal(signal.SIGXFSZ, handler)
    return disk


@pytest.mark.parametrize("disk, reason", [(_dev_full, "No space left on device"),
                                          (lambda mp: _room_for(1500), "File too large")])
def test_full_disk_names_the_checkpoint_to_resume_from(capsys, tiny, tmp_path, monkeypatch, disk, reason):
    """The end of epoch 2's checkpoint cannot be written: one line, exit 2, naming the first
    epoch's last.pt (intact) and the command that continues from it; no temporary file left.
    A disk that fills up part-way through a checkpoint was exit 3 ("unexpected pos ...")."""
    from netspec.train import checkpoint

    _second_last_pt_save(monkeypatch, disk(monkeypatch))
    code, _, err = run(capsys, "train", tiny, "--out", tmp_path / "r", "--quiet", "--set", "train.epochs=2")
    line = one_line(err)
    last = tmp_path / "r" / "last.pt"
    assert code == 2 and line.startswith(f"error: cannot write checkpoint {last}: {reason}; the previous one is kept; "
                                         f"once it can be written, continue from {last} (end of epoch 1) with: "), line
    assert line.endswith(f"train {tiny} --set train.epochs=2 --quiet --resume {tmp_path / 'r'}")
    assert checkpoint.load(last, needs=checkpoint.RESUME)["epoch"] == 1
    assert [p for p in os.listdir(tmp_path / "r") if p.endswith(".tmp")] == []


def test_full_disk_before_any_checkpoint(capsys, tiny, tmp_path, monkeypatch):
    from netspec.train import runs

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(runs.Path, "write_text", full)
    code, _, err = run(capsys, "train", tiny, "--out", tmp_path / "r", "--quiet")
    assert code == 2 and one_line(err) == (f"error: cannot write {tmp_path / 'r' / 'spec.yaml'}: No space left on device; "
                                           f"no checkpoint had been written: train again once it can be")


@pytest.fixture
def trained(capsys, tiny, tmp_path):
    code, _, err = run(capsys, "train", tiny, "--out", tmp_path / "r", "--quiet")
    assert code == 0, err
    return tmp_path / "r"


def _crafted(path, state: dict):
    torch.save({"netspec_checkpoint": 1, **state}, path)
    return path


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.pop("mean"), "has no 'mean' (a list of numbers)"),
    (lambda s: s.update(model=[1, 2]), "'model' is not a mapping of parameter names to tensors"),
    (lambda s: s.update(std=[0.0, 1.0, 1.0]), "'std' is not a list of positive numbers"),
    (lambda s: s.update(mean=[0.5]), "normalizes 1 channels; the spec's input has 3"),
    (lambda s: s.update(ema={"model": "x"}), "'ema' is not a weight average"),
])
def test_crafted_checkpoints_in_eval(capsys, tiny, trained, edit, needle):
    state = torch.load(trained / "last.pt", weights_only=True)
    edit(state)
    code, _, err = run(capsys, "eval", tiny, "--ckpt", _crafted(trained / "crafted.pt", state))
    assert code == 2 and needle in one_line(err)


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.pop("rng"), "has no 'rng'"),
    (lambda s: s["rng"].update(torch=torch.zeros(3)), "'rng' is not a random-generator state"),
    (lambda s: s.update(history=[{"epoch": "one"}]), "'history' is not a list of epoch rows"),
    (lambda s: s.update(epoch=5), "its epoch, step and history disagree"),
    (lambda s: s.update(optimizer={"state": {}, "param_groups": []}), "its optimizer state does not fit this run"),
    (lambda s: s.update(scheduler={"last_epoch": "x"}), "state does not fit this run"),
])
def test_crafted_checkpoints_in_resume(capsys, tiny, trained, edit, needle):
    state = torch.load(trained / "last.pt", weights_only=True)
    edit(state)
    _crafted(trained / "last.pt", state)
    (trained / "summary.json").unlink()   # else the run is complete, and its last.pt is not read
    code, _, err = run(capsys, "train", tiny, "--resume", trained, "--quiet")
    assert code == 2 and needle in one_line(err)


def test_plain_pickle_is_refused_without_torch_warnings(capsys, tiny, tmp_path):
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))   # torch warns about protocol 4 before refusing
    code, _, err = run(capsys, "eval", tiny, "--ckpt", path)
    line = one_line(err)
    assert code == 2 and "loading them would run code" in line and "weights_only` set to `False`" not in line


# -- data ---------------------------------------------------------------------------------------------
def _folder(root, classes, big=None):
    from PIL import Image
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(root / split / c / "x.png")
    if big is not None:
        Image.new("1", big).save(root / "train" / classes[0] / "bomb.png")


@pytest.mark.parametrize("size, needle", [((6000, 6000), "is 6000x6000 pixels, over the 33,554,432"),
                                          ((14000, 14000), "could be decompression bomb")])
def test_decompression_bomb_is_refused_from_its_header(capsys, tiny, tmp_path, monkeypatch, size, needle):
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    _folder(tmp_path / "img", ["a", "b"], big=size)
    assert os.path.getsize(tmp_path / "img" / "train" / "a" / "bomb.png") < 2**20
    code, _, err = run(capsys, "train", tiny, "--out", tmp_path / "r", "--quiet",
                       "--set", f"train.dataset={{name: imagefolder, root: {tmp_path / 'img'}, resize: true}}")
    assert code == 2 and needle in one_line(err)


def test_one_class_dataset_is_refused(capsys, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    _folder(tmp_path / "img", ["only"])
    code, _, err = run(capsys, "train", tiny, "--out", tmp_path / "r", "--quiet",
                       "--set", f"train.dataset={{name: imagefolder, root: {tmp_path / 'img'}}}")
    assert code == 2 and "has 1 class (only); a classifier needs at least 2" in one_line(err)


@pytest.mark.parametrize("download", [True, False])
def test_offline_download_is_one_line(capsys, tiny, tmp_path, monkeypatch, download):
    import torchvision

    class Offline:
        def __init__(self, root, train, download):
            print("Downloading http://example/train-images-idx3-ubyte.gz")   # torchvision's own chatter
            if download:
                raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
                                   "<urlopen error [Errno -2] Name or service not known>\n")
            raise RuntimeError("Dataset not found. You can use download=True to download it")
    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    code, out, err = run(capsys, "train", tiny, "--out", tmp_path / "r", "--quiet", "--set",
                         f"train.dataset={{name: mnist, root: {tmp_path}, download: {str(download).lower()}}}")
    line = one_line(err)
    assert code == 2 and "Downloading" not in out + err
    if download:
        assert "download into" in line and "Name or service not known" in line and "download=true" not in line
    else:
        assert "not found" in line and "--set train.dataset.download=true" in line


def test_class_names_never_reach_the_terminal_raw(capsys, tiny, tmp_path, monkeypatch):
    """Class folders named with CJK, ESC and a bidi override: no matplotlib glyph warning
    and no raw control character in what the run prints."""
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    _folder(tmp_path / "img", ["\u732b", "a\x1bb", "\u202etxt"])
    import warnings
    with warnings.catch_warnings(record=True) as caught:  # pytest would otherwise keep them from stderr
        warnings.simplefilter("always")
        code, out, err = run(capsys, "train", tiny, "--out", tmp_path / "r", "--set", "train.batch_size=2",
                             "--set", f"train.dataset={{name: imagefolder, root: {tmp_path / 'img'}}}")
    assert code == 0, err
    assert [str(w.message) for w in caught if "Glyph" in str(w.message)] == []
    assert err == "" and "\x1b" not in out and "\u202e" not in out
    assert (tmp_path / "r" / "confusion.png").is_file()
