"""Output folders: what a command may replace, and what it must leave alone.

Commands write into a folder the user names (``--out``). They replace its
contents only when everything in it is something this tool makes for that
command: a rosbag2 (``metadata.yaml`` and the storage files it lists) for
``generate bag`` and ``replay``, clip shards with their sidecars and manifest
for ``generate clips``, the report files for ``evaluate``. A user's notes,
another tool's data, a link, or the very input being read are refused with one
line before any work starts. :func:`foreign_entries` is that one decision;
:func:`claim_out_folder` applies it with the common ``--overwrite`` rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml

#: What a command writes into its output folder.
OutputKind = Literal["bag", "clips", "report"]

#: The files ``qcraft-wm evaluate`` writes into its ``--out`` folder.
REPORT_FILES = frozenset({"report.md", "metrics.json", "frames.png", "bev.png", "camera.png", "metrics.png",
                          "precision_gate.md", "live_vs_offline.md"})

#: A clip shard or its sidecar (``clip_dataset.shard_name``), or either while being written.
_SHARD_FILE = re.compile(r"[A-Za-z0-9_.-]+-seed\d{5,}\.(safetensors|json)(\.tmp)?")
#: Companion files SQLite keeps next to a database while it is open.
_SQLITE_COMPANIONS = ("-journal", "-wal", "-shm")


class OutFolderError(RuntimeError):
    """An output path cannot be written without harming what is there; the message says why."""


def foreign_entries(folder: Path, kind: OutputKind) -> list[str]:
    """The names in ``folder`` that a ``kind`` command did not make, sorted; [] when all of it is ours.

    Every command asks this before it deletes or overwrites anything in an
    output folder. Only regular files count as ours: a sub-folder or a link
    is always foreign.
    """
    files = {p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink()}
    if kind == "bag":
        ours = _rosbag2_files(folder) & files
    elif kind == "clips":
        ours = {name for name in files if _SHARD_FILE.fullmatch(name)}
        if "manifest.json" in files and _is_clip_manifest(folder / "manifest.json"):
            ours |= {"manifest.json", "manifest.json.tmp"} & files
    else:
        ours = REPORT_FILES & files
    return sorted(p.name for p in folder.iterdir() if p.name not in ours)


def claim_out_folder(out: Path, kind: OutputKind, overwrite: bool, inputs: Iterable[Path] = ()) -> bool:
    """Check that a command may write ``out``; True when it holds earlier outputs that will be replaced.

    Raises :class:`OutFolderError` when ``out`` is, holds or lies inside one of
    ``inputs`` (paths compared resolved); when it is a link or not a folder;
    when it is a non-empty folder and ``overwrite`` is not set; and, with
    ``overwrite``, when it holds anything :func:`foreign_entries` does not
    count as this command's. A missing or empty folder is free.
    """
    resolved = out.resolve()
    for source in inputs:
        source_resolved = Path(source).resolve()
        if resolved == source_resolved:
            raise OutFolderError(f"{out} is the input {source}: write the output to another folder")
        if resolved.is_relative_to(source_resolved) or source_resolved.is_relative_to(resolved):
            raise OutFolderError(f"{out} and the input {source} lie inside one another: "
                                 "write the output to a folder of its own")
    if out.is_symlink():
        raise OutFolderError(f"{out} is a symbolic link: name the folder itself (nothing was replaced)")
    if not out.exists():
        return False
    if not out.is_dir():
        raise OutFolderError(f"{out} exists and is not a folder: choose another output path")
    if not any(out.iterdir()):
        return False
    if not overwrite:
        raise OutFolderError(f"{out} already exists and is not empty: pass --overwrite to replace it, "
                             "or choose another output folder")
    foreign = foreign_entries(out, kind)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutFolderError(f"{out} holds what qcraft-wm did not write there ({shown}): not replacing it, "
                             "choose another output folder")
    return True


def _rosbag2_files(folder: Path) -> set[str]:
    """``metadata.yaml`` and the storage files it lists (with SQLite's companions), or nothing when the
    folder has no readable rosbag2 metadata: then nothing in it is a bag of ours."""
    try:
        info = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        listed = [str(name) for name in info["relative_file_paths"]]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        return set()
    # A listed path with a folder in it points outside the bag's own files: not ours to delete.
    storage = {name for name in listed if "/" not in name and name not in ("", ".", "..")}
    return {"metadata.yaml", *storage, *(name + suffix for name in storage for suffix in _SQLITE_COMPANIONS)}


def _is_clip_manifest(path: Path) -> bool:
    """Whether ``path`` is a manifest ``generate clips`` wrote (valid JSON declaring our format)."""
    # Imported here: clip_dataset pulls in the renderer, which bag writers must not need.
    from qcraft_world_model.data.clip_dataset import FORMAT

    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT
