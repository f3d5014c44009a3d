"""Taking models out and weights in: `netspec export`, `netspec predict` and the `--init` options
(docs/deploy.md). export.py and predict.py import torch; importing this package and commands.py
does not (the CLI imports them at start-up), so the settings the help text quotes live here."""
from __future__ import annotations

FORMATS = ("onnx", "pt2")
PRECISIONS = ("fp32", "bf16", "fp16")  # train.precision's; predict and eval take them as --precision
TOLERANCE = 1e-4          # fp32: max |exported - eager| / max |eager|
MIN_OPSET = 18            # torch's exporter writes nothing older (asked for less, it silently keeps 18)
