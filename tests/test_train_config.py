"""The `train:` section: strict, closed, documented, and torch-free."""
import subprocess
import sys

import pytest
from pydantic import ValidationError

from netspec.document.train import (DATASET_NAMES, OPTIMIZER_NAMES, SCHEDULE_NAMES, TrainConfig,
                                field_reference)


def test_empty_section_is_a_working_default():
    cfg = TrainConfig.model_validate({})
    assert cfg.dataset.name == "digits"
    assert cfg.optimizer.name == "sgd" and cfg.schedule.name == "onecycle"
    assert cfg.precision == "fp32" and cfg.epochs >= 1


@pytest.mark.parametrize("section,names", [("optimizer", OPTIMIZER_NAMES), ("schedule", SCHEDULE_NAMES),
                                           ("dataset", DATASET_NAMES)])
def test_unknown_name_lists_the_valid_ones(section, names):
    with pytest.raises(ValidationError) as e:
        TrainConfig.model_validate({section: {"name": "nope"}})
    msg = e.value.errors()[0]["msg"]
    assert f"unknown {section} name" in msg
    for n in names:
        assert n in msg


def test_name_picks_the_fields():
    cfg = TrainConfig.model_validate({"optimizer": {"name": "adamw", "lr": 3e-4, "weight_decay": 0.1},
                                      "schedule": {"name": "cosine", "warmup_epochs": 1}})
    assert cfg.optimizer.name == "adamw" and cfg.optimizer.weight_decay == 0.1
    assert cfg.schedule.warmup_epochs == 1
    # a field of another optimizer is an error, not ignored
    with pytest.raises(ValidationError, match="momentum"):
        TrainConfig.model_validate({"optimizer": {"name": "adam", "momentum": 0.9}})
    # name left out: the default optimizer, with the given rate
    assert TrainConfig.model_validate({"optimizer": {"lr": 0.2}}).optimizer.lr == 0.2


@pytest.mark.parametrize("doc", [{"epochs": "3"}, {"channels_last": "yes"}, {"batch_size": 0},
                                 {"precision": "fp8"}, {"epoch": 3}, {"loss": {"label_smoothing": 1.5}},
                                 {"normalization": {"mean": [0.5], "std": [0.2, 0.3]}},
                                 {"dataset": {"name": "imagefolder"}}])
def test_strict_and_closed(doc):
    with pytest.raises(ValidationError):
        TrainConfig.model_validate(doc)


def test_every_field_has_a_description():
    rows = field_reference()
    assert len(rows) > 40
    for path, _, _, desc in rows:
        assert desc.strip(), path
    schema = TrainConfig.model_json_schema()

    def walk(node, where):
        for name, prop in (node.get("properties") or {}).items():
            assert prop.get("description"), f"{where}.{name}"
    walk(schema, "train")
    for name, sub in schema.get("$defs", {}).items():
        walk(sub, name)


def test_config_module_does_not_import_torch():
    code = "import sys, netspec.document.train, netspec.train.commands; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docs_list_every_field():
    from pathlib import Path
    docs = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    missing = [p for p, *_ in field_reference() if f"`{p.replace('|', chr(92) + '|')}`" not in docs]
    assert not missing, f"docs/training.md lacks {missing}; regenerate its field table"
