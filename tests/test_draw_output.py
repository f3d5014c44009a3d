"""`netspec draw`'s default output file comes from the spec's `name:`, made a plain file name here
(issue 23: `../x.svg`, absolute paths, newline/ESC/NUL in names were written where they pointed)."""
from __future__ import annotations

import json

import pytest

from netspec.document.paths import file_stem


@pytest.mark.filterwarnings("ignore:Glyph")  # matplotlib has no glyph for ESC or NUL in the title
@pytest.mark.parametrize("name, stem", [
    ("../x", "x"), ("/tmp/abs", "tmp-abs"), ("a\nb\x1b[2J\x00c", "a-b-2J-c"), ("..", "spec"), (".hidden", "hidden"),
    ("-rf", "rf"), ("résumé net", "r-sum-net"), ("x" * 300, "x" * 100), ("resnet50", "resnet50"),
])
def test_the_default_picture_is_a_file_here(cli, tmp_path, monkeypatch, name, stem):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    spec = tmp_path / "in" / "s.json"
    spec.write_text(json.dumps({"netspec": 1, "name": name, "input": [3, 8, 8], "layers": [{"conv": {"out": 4, "k": 3}}]}))
    r = cli("draw", spec)
    assert r.code == 0, r.err
    assert r.out.startswith(f"wrote {stem}.svg ") and [p.name for p in tmp_path.iterdir() if p.is_file()] == [f"{stem}.svg"]
    assert file_stem(name, "spec") == stem
