"""`--init SOURCE` / `--init-skip`: weights in, strictly, from every kind of source.

Round trips (train -> checkpoint -> --init -> identical eval, through .pt state_dicts and
.safetensors too), torchvision state_dicts into one torchvision-parity spec per family (every
spec's keys and shapes: tests/test_zoo.py), the fine-tuning
case (resnet50 on a 3-class image folder with a new fc), and the reports and one-line errors
of everything that does not fit.
"""
from __future__ import annotations

import json
import re
import urllib.error

import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import save_file

import netspec
import netspec.errors
from conftest import ROOT, save_png
from netspec import weights
from netspec.train.loop import Job
from zoo import ONE_PER_FAMILY
from zoo import reference as zoo_reference
from tests.train_helpers import tiny_spec


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with a moving average (so last.pt holds two sets of weights)."""
    from netspec.cli import main

    folder = tmp_path_factory.mktemp("w")
    spec = folder / "tiny.json"
    spec.write_text(json.dumps(tiny_spec(ema={"decay": 0.8})))
    assert main(["train", str(spec), "--out", str(folder / "run"), "--quiet", "--set", "train.epochs=2"]) == 0
    return spec, folder / "run"


def eval_json(cli, spec, *weights_args):
    r = cli("eval", spec, *weights_args, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out), r.err


def test_init_round_trip_gives_identical_eval(cli, trained, tmp_path):
    spec, run = trained
    for ckpt in ("best.pt", "last.pt"):
        by_ckpt, _ = eval_json(cli, spec, "--ckpt", run / ckpt)
        by_init, err = eval_json(cli, spec, "--init", run / ckpt)
        assert by_init == by_ckpt
        assert "init: 8 tensors from" in err
    state = torch.load(run / "last.pt", weights_only=True)
    # the evaluated weights, as a plain state_dict and as safetensors: the same evaluation
    torch.save(state["ema"]["model"], tmp_path / "sd.pt")
    save_file(state["ema"]["model"], str(tmp_path / "sd.safetensors"))
    reference, _ = eval_json(cli, spec, "--ckpt", run / "last.pt")
    for source in ("sd.pt", "sd.safetensors"):
        got, err = eval_json(cli, spec, "--init", tmp_path / source)
        assert got["test_acc"] == reference["test_acc"] and got["confusion"] == reference["confusion"], source
        assert got["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-6)
    assert "moving-average" in weights.read(str(run / "last.pt")).origin  # what `netspec eval` evaluates


def test_train_init_starts_from_the_weights(cli, trained, tmp_path, capsys):
    spec, run = trained
    job = Job.from_spec(netspec.load(spec))
    weights.init_job(job, weights.read(str(run / "best.pt")))
    model = job.build()
    best = torch.load(run / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert capsys.readouterr().err.count("init: 8 tensors from") == 1  # once, however often the job builds
    model = job.build()
    assert capsys.readouterr().err == ""
    # through the CLI: the run trains from there and says what it loaded
    r = cli("train", spec, "--init", run / "best.pt", "--out", tmp_path / "b", "--quiet", "--set", "train.epochs=1")
    assert r.code == 0, r.err
    assert r.err.count("init: 8 tensors from") == 1 and "netspec checkpoint, spec 'tiny', epoch 2" in r.err
    r = cli("train", spec, "--init", run / "best.pt", "--resume", run)
    assert r.code == 2 and "--resume" in r.err


def test_torchvision_state_dicts_load_strictly_into_every_parity_spec(tmp_path):
    for name in [*ONE_PER_FAMILY, "resnext50"]:  # through a file; the keys of every spec: tests/test_zoo.py
        reference = zoo_reference(name, "meta")  # keys and shapes are the point: no memory, no init time
        path = tmp_path / f"{name}.pt"
        torch.save(reference.state_dict(), path)
        model = netspec.build(netspec.analyze(ROOT / "specs" / f"{name}.yaml"), device="meta")
        report = weights.load_into(model, weights.read(str(path)))
        assert report.loaded == len(reference.state_dict()) and not report.skipped, name


def test_real_tensors_arrive(tmp_path):
    """The tensors themselves: torchvision's resnet18 from a file gives torchvision's outputs."""
    torch.manual_seed(0)
    reference = tvm.resnet18(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    model = netspec.build(netspec.analyze(ROOT / "specs" / "resnet18.yaml")).eval()
    weights.load_into(model, weights.read(str(tmp_path / "r18.pth")))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert float((got - expected).abs().max() / expected.abs().max()) < 1e-5


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """A 3-class ImageFolder (random 40x40 RGB images) and torchvision resnet50 weights in a file."""

    root = tmp_path_factory.mktemp("folder")
    g = torch.Generator().manual_seed(0)
    for c, name in enumerate(("cat", "dog", "fox")):
        (root / name).mkdir()
        for i in range(6):
            img = (torch.rand(3, 40, 40, generator=g) * 80 + 60 * c).to(torch.uint8)
            save_png(img, str(root / name / f"{i}.png"))
    torch.manual_seed(0)
    path = root.parent / "resnet50.pth"
    torch.save(tvm.resnet50(weights=None).state_dict(), path)
    return root, path


def fine_tune(root, *extra):
    return ["train", ROOT / "specs" / "resnet50.yaml", "--quiet", "--set", "vars.classes=3",
            "--set", "input=[3, 32, 32]", "--set", "train.epochs=1", "--set", "train.batch_size=4",
            "--set", f"train.dataset={{name: imagefolder, root: {root}, split: 0.5, resize: true}}", *extra]


def test_fine_tune_resnet50_with_a_new_head(cli, three_classes, tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    root, sd = three_classes
    r = cli(*fine_tune(root, "--init", sd, "--out", tmp_path / "run"))
    assert r.code == 2  # the 1000-class head does not fit 3 classes: said, and nothing trained
    line = r.err.strip()
    assert "\n" not in line and "2 of another shape: fc.weight file [1000, 2048] model [3, 2048], " \
                                "fc.bias file [1000] model [3]; 318 match" in line
    assert not (tmp_path / "run").exists()

    r = cli(*fine_tune(root, "--init", sd, "--init-skip", "fc.*", "--out", tmp_path / "run"))
    assert r.code == 0, r.err
    lines = r.err.strip().splitlines()
    assert lines[0].startswith("init: 318 tensors from") and "2 skipped by --init-skip 'fc.*'" in lines[0]
    assert [ln.split()[:2] for ln in lines[1:3]] == [["skipped", "fc.bias"], ["skipped", "fc.weight"]]
    assert "model [3, 2048]  file [1000, 2048]" in lines[2]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["dataset"] == "imagefolder"


def test_mismatches_are_listed_and_counted(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    state = {f"x{i}.weight": torch.zeros(1) for i in range(8)}
    state["0.weight"] = torch.zeros(4, 2, 3, 3)
    with pytest.raises(weights.WeightsError) as e:
        weights.load_into(model, weights.Weights(state, "f.pt"))
    msg = str(e.value)
    assert "\n" not in msg
    assert "5 missing from the file: 0.bias, 1.weight, 1.bias, 1.running_mean, 1.running_var" in msg
    assert "8 not in the model: x0.weight, x1.weight, x2.weight, x3.weight, x4.weight and 3 more" in msg
    assert "1 of another shape: 0.weight file [4, 2, 3, 3] model [4, 1, 3, 3]; 0 match" in msg
    # counters a pre-2018 file lacks are kept, as torch's own loading keeps them
    full = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert weights.load_into(model, weights.Weights(full, "old.pt")).filled == 1
    with pytest.raises(weights.WeightsError, match="'fc.*' matches no key"):
        weights.load_into(model, weights.Weights(full, "old.pt"), ["fc.*"])


def test_unreadable_and_unsafe_files(cli, tmp_path):
    import pickle

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(print, protocol=2))  # would run code if unpickled freely
    (tmp_path / "list.pt").write_bytes(b"")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    for name, needle in (("evil.pt", "cannot read it as a weights-only torch file"),
                         ("list.pt", "holds list, not a state_dict"),
                         ("bad.safetensors", "not a readable safetensors file")):
        r = cli("export", ROOT / "specs" / "digits.yaml", "--format", "pt2", "--init", tmp_path / name,
                "-o", tmp_path / "x.pt2")
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and needle in r.err, (name, r.err)


def test_torchvision_name_offline_names_the_file_and_where_it_goes(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    r = cli("export", ROOT / "specs" / "resnet50.yaml", "--format", "pt2",
            "--init", "torchvision:ResNet50_Weights.IMAGENET1K_V2")
    cached = tmp_path / "th" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert r.code == 2 and r.out == ""
    assert r.err.strip().splitlines() == [
        f"error: --init torchvision:ResNet50_Weights.IMAGENET1K_V2: {cached} is not there and downloading "
        f"https://download.pytorch.org/models/resnet50-11ad3fa6.pth failed (<urlopen error [Errno -3] Temporary "
        f"failure in name resolution>); fetch that URL elsewhere and put the file at {cached}"]


@pytest.mark.parametrize("name,hint", [
    ("ResNet50_Weight.IMAGENET1K_V2", "(did you mean torchvision:ResNet50_Weights.IMAGENET1K_V2?)"),
    ("ResNet50_Weights.IMAGENET1K_V3", "(did you mean torchvision:ResNet50_Weights.IMAGENET1K_V2?)"),
    ("resnet50", "(did you mean torchvision:ResNet50_Weights.DEFAULT?)"),
    ("os.system", "names look like torchvision:ResNet50_Weights.IMAGENET1K_V2"),
])
def test_bogus_torchvision_name_is_one_line_with_a_hint(cli, name, hint):
    r = cli("eval", ROOT / "specs" / "resnet50.yaml", "--init", f"torchvision:{name}")
    assert r.code == 2
    assert r.err.strip().splitlines() == [f"error: --init torchvision:{name}: torchvision has no such weights"
                                          + (" " if hint.startswith("(") else "; ") + hint]


def test_torchvision_cache_hit_brings_the_class_names(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints"
    cached.mkdir(parents=True)
    with torch.device("meta"):
        torch.save(tvm.resnet18().state_dict(), cached / "resnet18-f37072fd.pth")
        # DenseNet's published file (2017) has the old key names ("norm.1") and no BatchNorm
        # counters: renamed as torchvision renames them, the counters kept at 0
        old = {k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v
               for k, v in tvm.densenet121().state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, cached / "densenet121-a639ec97.pth")
    w = weights.read("torchvision:ResNet18_Weights.IMAGENET1K_V1")
    assert len(w.classes) == 1000 and w.classes[0] == "tench" and w.mean == [0.485, 0.456, 0.406]
    model = netspec.build(netspec.analyze(ROOT / "specs" / "resnet18.yaml"), device="meta")
    assert weights.load_into(model, w).loaded == len(model.state_dict())
    model = netspec.build(netspec.analyze(ROOT / "specs" / "densenet121.yaml"), device="meta")
    report = weights.load_into(model, weights.read("torchvision:DenseNet121_Weights.DEFAULT"))
    assert report.loaded + report.filled == len(model.state_dict()) and report.filled == 121


# -- what a weight file must hold (issue 23: silent truncation, NaN, crashes, bombs) -----------------------------
def _linear_state() -> tuple[torch.nn.Module, dict]:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    return model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind, dtype", [(kind, dtype) for kind in ("pt", "safetensors", "checkpoint")
                                         for dtype in (torch.int64, torch.bool, torch.complex64)
                                         if (kind, dtype) != ("safetensors", torch.complex64)])  # it stores none
def test_tensors_of_another_kind_are_refused_and_listed(tmp_path, kind, dtype):
    """int64 weights were cast into float parameters: every weight truncated to 0, and `export`
    verified the all-zero model. Refused, listed like a shape mismatch, from every kind of file."""
    model, state = _linear_state()
    state = {k: v.to(dtype) for k, v in state.items()}
    path = tmp_path / f"w.{kind}"
    if kind == "safetensors":
        save_file(state, path)
    elif kind == "checkpoint":
        torch.save({"netspec_checkpoint": 1, "model": state, "mean": [0.5], "std": [0.5]}, path)
    else:
        torch.save(state, path)
    with pytest.raises(weights.WeightsError) as e:
        weights.load_into(model, weights.read(str(path)))
    name = str(dtype).removeprefix("torch.")
    assert f"2 of another dtype: 0.weight file {name} model float32, 0.bias file {name} model float32" in str(e.value)
    assert float(model[0].weight.detach().abs().sum()) > 0  # untouched


def test_half_precision_files_load_as_a_cast(tmp_path):
    model, state = _linear_state()
    torch.save({k: v.half() for k, v in state.items()}, tmp_path / "h.pt")
    assert weights.load_into(model, weights.read(str(tmp_path / "h.pt"))).loaded == 2


def test_non_finite_sparse_and_meta_tensors_are_refused(tmp_path):
    model, state = _linear_state()
    cases = {
        "nan.pt": ({**state, "0.weight": torch.full((3, 4), float("nan")), "0.bias": torch.tensor([1, float("inf"), 0])},
                   "cannot be loaded: 2 not finite: 0.weight (12 NaN), 0.bias (1 inf)"),
        "sparse.pt": ({**state, "0.weight": state["0.weight"].to_sparse()}, "1 not dense tensors: 0.weight (sparse_coo)"),
        "meta.pt": ({k: v.to("meta") for k, v in state.items()}, "2 without data (meta tensors): 0.weight, 0.bias"),
    }
    for name, (content, needle) in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(weights.WeightsError, match=re.escape(needle)):
            weights.load_into(model, weights.read(str(tmp_path / name)))
    assert torch.equal(model.state_dict()["0.weight"], state["0.weight"])


def test_a_zip_bomb_is_refused_before_it_inflates(tmp_path):
    """A torch zip deflated: 64 MiB of zeros in a file of 64 KB (1 GiB in 1 MB: the same). Its record is bigger than the
    storage its pickle declares (or its declared shape is not the model's): refused from the zip's
    directory and the pickle alone, before a byte is inflated."""
    import zipfile

    model, state = _linear_state()
    torch.save(state, tmp_path / "ok.pt")
    with zipfile.ZipFile(tmp_path / "ok.pt") as src, \
            zipfile.ZipFile(tmp_path / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            with dst.open(info.filename, "w", force_zip64=True) as record:
                for _ in range(2**6 if info.filename.endswith("data/0") else 0):
                    record.write(bytes(2**20))  # 64 MiB of zeros, deflated a MiB at a time
                record.write(b"" if info.filename.endswith("data/0") else src.read(info))
    assert (tmp_path / "bomb.pt").stat().st_size < 2**20
    inflated = []
    real = zipfile.ZipFile.read
    with pytest.MonkeyPatch.context() as patch:  # torch inflates in C++; this sees a Python reader's
        patch.setattr(zipfile.ZipFile, "read", lambda self, name, *a: inflated.append(name) or real(self, name, *a))
        with pytest.raises(weights.WeightsError, match=r"its zip records unpack to 67,10\d,\d+ bytes, more than "
                                                        r"the storages its tensors declare \(60 bytes\) allow"):
            weights.load_into(model, weights.read(str(tmp_path / "bomb.pt")))
    assert inflated == []
    # the declared shape itself is the model's only when it is: a 2**28-float tensor is compared first
    torch.save({"0.weight": torch.zeros(2**28, device="meta"), "0.bias": state["0.bias"]}, tmp_path / "huge.pt")
    with pytest.raises(weights.WeightsError, match=r"0.weight file \[268435456\] model \[3, 4\]"):
        weights.load_into(model, weights.read(str(tmp_path / "huge.pt")))


def test_skipping_every_tensor_is_refused_and_never_suggested(cli, trained, tmp_path):
    """`--init-skip '*'` evaluated a random model (10%, exit 0), and the refusal of another spec's
    checkpoint suggested --init-skip: eval/predict never suggest skipping the model's own keys."""
    spec, run = trained
    r = cli("eval", spec, "--ckpt", run / "best.pt", "--init-skip", "*")
    assert r.code == 2 and r.out == ""
    assert r.err.strip().splitlines() == [
        f"error: --init-skip '*' skips every tensor of the model: nothing would be loaded from {run / 'best.pt'} "
        f"(netspec checkpoint, spec 'tiny', epoch 2), and the model would keep its random initialization; refused"]
    other = tmp_path / "other.json"  # another spec on the same input: a wider conv
    doc = tiny_spec()
    doc["name"], doc["layers"][0]["conv"]["out"] = "other", 16
    other.write_text(json.dumps(doc))
    for command in ("eval", "predict"):
        r = cli(command, other, "--ckpt", run / "best.pt", *(["x.png"] if command == "predict" else []))
        assert r.code == 2 and "was trained from spec 'tiny', not this spec" in r.err
        assert "--init-skip" not in r.err, r.err
    # training a new head is what --init-skip is for: there it is suggested
    model, state = _linear_state()
    state["0.weight"] = torch.zeros(5, 4)
    state["0.bias"] = torch.zeros(5)
    with pytest.raises(weights.WeightsError, match=r"--init-skip PATTERN"):
        weights.load_into(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 3)),
                          weights.Weights({**state, "1.weight": torch.zeros(3, 3), "1.bias": torch.zeros(3)}, "f.pt"),
                          fresh=True)


def test_checkpoint_fields_beyond_the_weights_are_checked(cli, tmp_path):
    """`classes` as an int crashed (TypeError: object of type 'int' has no len())."""
    model, state = _linear_state()
    for classes, needle in ((7, "'classes' is not a list of class names"),
                            ([torch.zeros(1)], "'classes' is not a list of class names")):
        torch.save({"netspec_checkpoint": 1, "model": state, "mean": [0.5], "std": [0.5], "classes": classes},
                   tmp_path / "c.pt")
        for read in (weights.read, weights.from_checkpoint):
            with pytest.raises(netspec.errors.NetspecError, match=needle):
                read(str(tmp_path / "c.pt"))


@pytest.mark.parametrize("content, needle", [
    ([torch.zeros(1)], "holds list, not a state_dict with names as keys"),
    ({0: torch.zeros(1)}, "holds dict, not a state_dict with names as keys"),
])
def test_a_torchvision_cache_file_of_another_shape_is_one_line(cli, tmp_path, monkeypatch, content, needle):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(content, tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    r = cli("export", ROOT / "specs" / "resnet18.yaml", "--format", "pt2", "--init",
            "torchvision:ResNet18_Weights.IMAGENET1K_V1", "-o", tmp_path / "x.pt2")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and needle in r.err, r.err


def test_a_protocol_4_pickle_is_one_line_without_torch_warnings(cli, tmp_path):
    import pickle

    (tmp_path / "p4.pt").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    for flag in ("--init", "--ckpt"):
        r = cli("export", ROOT / "specs" / "digits.yaml", "--format", "pt2", flag, tmp_path / "p4.pt",
                "-o", tmp_path / "x.pt2")
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
        assert "loading them would run code" in r.err and "UserWarning" not in r.err


def test_the_init_report_escapes_what_the_file_names(tmp_path):
    """Keys are the file's: a newline or ESC in one would forge report lines or drive the terminal."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    state = {**model.state_dict(), "evil\n\x1b[2Jkey": torch.zeros(1)}
    report = weights.load_into(model, weights.Weights(state, "f\x07.pt"), ["evil*"])
    lines = report.lines()
    assert len(lines) == 2 and all(line.isprintable() for line in lines)
    assert "evil\\n\\x1b[2Jkey" in lines[1] and "f\\x07.pt" in lines[0]
