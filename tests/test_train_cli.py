"""`netspec train` / `netspec eval` as a user runs them: the main job, one-line errors,
exit codes, and the help that lists every train field."""
import json

import pytest

from netspec.cli import main
from tests.train_helpers import tiny_spec


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_spec()))
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_main_job_digits_reaches_95_percent(capsys, tmp_path):
    # the README's main job, exactly as documented (only the run folder is pinned)
    code, out, err = run(capsys, "train", "specs/digits.yaml", "--out", str(tmp_path / "run"))
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_acc"] >= 0.95
    assert "test accuracy" in out.splitlines()[-1]


def test_train_then_eval(capsys, tiny, tmp_path):
    code, out, err = run(capsys, "train", tiny, "--out", str(tmp_path / "r"), "--quiet", "--set", "train.epochs=2")
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["epochs"] == 2
    code, out, err = run(capsys, "eval", tiny, "--ckpt", str(tmp_path / "r" / "last.pt"), "--json")
    assert code == 0, err
    assert json.loads(out)["test_acc"] == summary["test_acc"]
    code, out, err = run(capsys, "eval", tiny, "--ckpt", str(tmp_path / "r" / "best.pt"))
    assert code == 0 and "class0" in out and "test accuracy" in out


@pytest.mark.parametrize("sets,needle", [
    (["train.optimizer.name=rmsprop"], "valid names: sgd, adam, adamw"),
    (["train.schedule.name=exponential"], "valid names: constant, step, cosine, onecycle, poly"),
    (["train.dataset={name: digits}"], "[3, 8, 8]"),  # input shape vs data
    (["train.batch_size=1000"], "larger than the training set"),
])
def test_bad_input_is_one_line_exit_2(capsys, tiny, tmp_path, sets, needle):
    argv = ["train", tiny, "--out", str(tmp_path / "r"), "--quiet"]
    for s in sets:
        argv += ["--set", s]
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_missing_dataset_names_the_path_and_the_fix(capsys, tiny, tmp_path):
    code, _, err = run(capsys, "train", tiny, "--quiet", "--out", str(tmp_path / "r"),
                       "--set", "train.dataset={name: cifar10, root: " + str(tmp_path / "none") + "}")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(tmp_path / "none") in err and "download=true" in err


def test_checkpoint_errors(capsys, tiny, tmp_path):
    code, _, err = run(capsys, "train", tiny, "--resume", str(tmp_path))
    assert code == 2 and "no last.pt" in err
    evil = tmp_path / "evil.pt"
    import pickle
    evil.write_bytes(pickle.dumps(print, protocol=2))  # not a tensor file: must be refused, never run
    code, _, err = run(capsys, "eval", tiny, "--ckpt", str(evil))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot read checkpoint" in err


def test_help_lists_the_train_fields(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for path in ("train.optimizer[sgd].nesterov", "train.schedule[onecycle].pct_start", "train.precision",
                 "train.augmentation.crop_padding", "train.loss.label_smoothing", "train.eval_every", "--resume"):
        assert path in out


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_without_a_gpu(capsys, tiny, tmp_path):
    code, _, err = run(capsys, "train", tiny, "--device", "cuda", "--quiet", "--out", str(tmp_path / "r"))
    assert code == 2 and "--device cpu" in err and len(err.strip().splitlines()) == 1
