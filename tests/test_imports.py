"""The static path (load, validate, resolve, analyze, check, compile, schema) never
imports torch; each pipeline module imports only earlier stages."""
from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT


def test_static_path_does_not_import_torch():
    code = ("import sys, netspec; a = netspec.analyze(sys.argv[1]); "
            "from netspec.cli import main; main(['check', sys.argv[1]]); main(['compile', '--json', sys.argv[1]]);"
            "from netspec.receptive import fields; fields(a);"
            "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "specs" / "resnext50.yaml")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# stage -> netspec modules it must never import (later stages)
LATER = {
    "netspec/document": ("netspec.resolver", "netspec.analysis", "netspec.builder", "netspec.train", "netspec.data", "torch"),
    "netspec/layers": ("netspec.document", "netspec.resolver", "netspec.analysis", "netspec.builder", "netspec.train"),
    "netspec/modules.py": ("netspec.document", "netspec.resolver", "netspec.analysis", "netspec.builder", "netspec.train"),
    "netspec/ir.py": ("netspec.resolver", "netspec.analysis", "netspec.builder", "torch"),
    "netspec/resolver.py": ("netspec.analysis", "netspec.builder", "torch"),
    "netspec/analysis.py": ("netspec.builder", "netspec.train", "torch"),
    "netspec/budget.py": ("netspec.builder", "netspec.train", "netspec.data", "torch"),
    "netspec/receptive.py": ("netspec.builder", "netspec.train", "torch"),
    "netspec/draw.py": ("netspec.builder", "netspec.train", "netspec.data", "torch"),
    "netspec/locks.py": ("netspec.builder", "netspec.train", "netspec.data", "torch"),
}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_import_direction():
    for where, banned in LATER.items():
        target = ROOT / where
        files = [target] if target.is_file() else sorted(target.rglob("*.py"))
        for path in files:
            for module in _imports(path):
                if where == "netspec/layers" and module == "torch":
                    continue  # only inside build(), checked below
                assert not any(module == b or module.startswith(b + ".") for b in banned), f"{path} imports {module}"


def test_layers_import_torch_only_inside_build():
    for path in (ROOT / "netspec" / "layers").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(n and n.split(".")[0] == "torch" for n in names), f"{path}: top-level torch import"


def test_check_builds_the_models_of_what_the_document_uses_only():
    """`netspec check` starts fast because the schema's per-type models are made and built on
    first use (netspec/document/schema.py: PerTag, BuiltOnUse): a spec without `train:` never
    loads the train config, and only the item types it writes are made."""
    code = ("import sys; from netspec.cli import main; main(['check', sys.argv[1]]);"
            "from netspec.document import schema;"
            "print(sorted(schema.LAYER_ITEMS._made), sorted(schema.STRUCTURAL._made), 'netspec.document.train' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "specs" / "resnext50.yaml")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "['avgpool', 'bn', 'conv', 'flatten', 'linear', 'maxpool', 'relu'] ['residual'] False"


def test_check_called_in_a_process_that_goes_on_leaves_the_collector_as_it_was(cli):
    """The `netspec` command freezes what its imports made for its check loop; main() called
    by a program that goes on (an editor, this test) unfreezes it, or what was alive then
    would never be collected."""
    import gc
    assert cli("check", ROOT / "specs" / "resnext50.yaml").code == 0
    assert gc.get_freeze_count() == 0
