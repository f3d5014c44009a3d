"""Paths in a spec, one rule: a relative path is relative to the folder of the file that
writes it, as `extends:` is. A base spec's paths (reached through `extends:`) are relative
to the base's own folder; a path given with `--set` is relative to the current directory,
as any path typed in a shell. `~` is the home folder.

They are made absolute when the spec is loaded, so the loaded document stands alone: a run
folder's spec.yaml trains from anywhere. `check_dataset_root` tells, located at the field,
when the folder a dataset needs is not there (before any data is read).
Must not import torch or any later stage.
"""
from __future__ import annotations

import os
import re

from netspec.errors import SpecError

PATH_FIELDS = (("train", "dataset", "root"),)


def absolute_paths(source) -> None:
    """Rewrite every relative path field of the document as an absolute path (in place)."""
    for path in PATH_FIELDS:
        parent = source.data
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        value = parent.get(path[-1]) if isinstance(parent, dict) else None
        if not isinstance(value, str) or not value:
            continue
        parent[path[-1]] = os.path.normpath(os.path.join(_base(source, path), os.path.expanduser(value)))


def _base(source, path: tuple) -> str:
    if source.set_by(path) is None:
        file = source.origin(path)[0]
        if os.path.isfile(file):
            return os.path.dirname(os.path.abspath(file))
    return os.getcwd()


def check_dataset_root(spec) -> None:
    """The folder train.dataset.root names must exist (unless the dataset is to be
    downloaded into it); an image folder needs its train/test subfolders, or `split`."""
    dataset = spec.train.dataset if spec.train is not None else None
    root = getattr(dataset, "root", None)
    if root is None or getattr(dataset, "download", False):
        return
    problem = None
    if not os.path.isdir(root):
        problem = f"{root} is not a folder"
        if hasattr(dataset, "download"):   # torchvision's sets; a folder of one's own is not fetched
            problem += f"; add --set train.dataset.download=true to fetch {dataset.name} into it"
    elif dataset.name == "imagefolder" and dataset.split is None:
        missing = [d for d in (dataset.train_dir, dataset.test_dir) if not os.path.isdir(os.path.join(root, d))]
        if missing:
            problem = (f"{root} has no {' or '.join(m + '/' for m in missing)} folder; "
                       f"give train_dir/test_dir, or split: 0.8 to split {root}/<class>/* at random")
    if problem is None:
        return
    where = ("train", "dataset", "root")
    source = spec.source
    if source is None:
        raise SpecError(problem, where)
    rule = ("a relative --set path is relative to the current directory" if source.set_by(where) is not None
            else f"relative paths in {source.origin(where)[0]} are relative to its folder")
    raise source.error(f"{problem} ({rule})", where)


def file_stem(name: str, default: str) -> str:
    """A spec's `name:` as a file or folder name here (train's run folder, draw's picture): what is
    not a letter, digit, '_', '.' or '-' becomes '-' (no '/', no control character), with no
    leading or trailing dot or dash (no '..', no hidden file, no option), at most 100 characters;
    `default` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:100].strip("-.") or default
