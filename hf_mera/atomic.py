"""Publish files and folders atomically: write beside the target, then rename over it.

A reader (a resumed run, another process, the hub uploader) then sees either the old content or the
new one, never half of a file, and a crash mid-write loses nothing already published. Every place in
hf_mera that publishes a result goes through these functions.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write a file of any kind to (a safetensors file, a figure); on
    success it replaces `path`, on an exception it is removed and `path` is left as it was::

        with atomic_file(folder / "features.safetensors") as tmp:
            save_file(tensors, tmp)

    The temporary name keeps `path`'s suffix, so writers that pick a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as err:  # disk full, permission denied: name the file and what is safe
        _note_unpublished(err, path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _note_unpublished(err: Exception, path: Path) -> None:
    # A write error from inside a writer (safetensors, json) rarely names the file: say which one,
    # and that the previous version is untouched.
    err.add_note(f"hf_mera: writing {path} failed; its previous content (if any) is untouched.")


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` through a temporary file in the same folder and `os.replace`."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> Path:
    """`atomic_write_text` of `json.dumps(obj, indent=2, **dumps_kwargs)`."""
    dumps_kwargs.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(obj, **dumps_kwargs))


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder in `.tmp-<name>` beside `path`; on success it replaces `path` (and whatever was
    there, folder or link), on an exception it is removed and `path` is left as it was::

        with atomic_directory(out / "stage-1-image") as tmp:
            (tmp / "stage.json").write_text(...)
    """
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    old = path.with_name(f".old-{path.name}")
    try:
        yield tmp
        # Move the previous folder aside, not delete it first, so a failure here cannot leave half of it.
        shutil.rmtree(old, ignore_errors=True)
        if path.is_symlink() or path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, Exception):
            _note_unpublished(err, path)
        raise
    if old.is_symlink() or old.is_file():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["atomic_directory", "atomic_file", "atomic_write_json", "atomic_write_text"]
