"""Clip datasets on disk: safetensors shards, one per episode, and a manifest.

A shard holds its episode's clips stacked along the first axis, so one clip
loads by slicing without reading the rest. Each shard has a JSON sidecar
(provenance, clip count, SHA-256) written after the shard itself; a shard
without its sidecar is unfinished and is regenerated. The manifest lists the
finished shards. Writes go to a temporary name and are renamed into place.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from qcraft_world_model.data.camera_rig import PinholeCamera, camera_from_dict
from qcraft_world_model.data.episode import AGENT_FEATURES, Clip

FORMAT = "qcraft-wm-clips/1"
METADATA_KEY = "qcraft_world_model"
ARRAY_FIELDS = ("frames", "ego", "agents", "agent_valid", "agent_size", "agent_label", "agent_id",
                "agent_in_view", "ego_pose_map")
#: Written to every new shard but missing from shards made before them: a clip of such a shard
#: comes without these keys (same format version; nothing else about the layout changed).
OPTIONAL_ARRAY_FIELDS = ("agent_visible_px", "agent_visibility")


class DatasetError(RuntimeError):
    """A dataset is missing, incomplete, or does not match what was asked for; the message says how."""


def shard_name(map_name: str, seed: int) -> str:
    return f"{map_name}-seed{seed:05d}.safetensors"


def write_shard(path: Path, clips: Sequence[Clip], provenance: dict[str, Any]) -> dict[str, Any]:
    """Write clips to ``path`` and its sidecar atomically; return the sidecar's content."""
    if not clips:
        raise DatasetError(f"no clips to write to {path}")
    arrays = {name: np.ascontiguousarray(np.stack([getattr(c, name) for c in clips]))
              for name in (*ARRAY_FIELDS, *OPTIONAL_ARRAY_FIELDS)}
    arrays["time_s"] = np.array([c.time_s for c in clips], np.float64)
    # One metadata key: safetensors writes its metadata map in hash order, so
    # several keys would make the same shard come out with different bytes.
    metadata = {METADATA_KEY: json.dumps({"format": FORMAT, "provenance": provenance,
                                          "agent_features": list(AGENT_FEATURES)}, sort_keys=True)}
    _atomic(path, lambda tmp: save_file(arrays, str(tmp), metadata=metadata))
    sidecar = {**provenance, "file": path.name, "clips": len(clips), "sha256": _sha256(path),
               "bytes": path.stat().st_size}
    _atomic(sidecar_path(path), lambda tmp: tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n"))
    return sidecar


def sidecar_path(shard: Path) -> Path:
    return shard.with_suffix(".json")


def finished_shard(path: Path) -> dict[str, Any] | None:
    """The sidecar of a shard that was completely written, else None."""
    sidecar = sidecar_path(path)
    if not (path.is_file() and sidecar.is_file()):
        return None
    try:
        info = json.loads(sidecar.read_text())
    except json.JSONDecodeError:
        return None
    return info if info.get("bytes") == path.stat().st_size else None


def write_manifest(root: Path, split: str, shards: list[dict[str, Any]], settings: dict[str, Any]) -> Path:
    manifest = {"format": FORMAT, "split": split, "clips": sum(s["clips"] for s in shards),
                "shards": sorted(shards, key=lambda s: s["file"]), **settings}
    path = root / "manifest.json"
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n"))
    return path


class ClipDataset:
    """Random access to the clips of a generated dataset (NumPy; no torch needed)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.is_file():
            raise DatasetError(f"{self.root} is not a clip dataset (no manifest.json); "
                               "make one with `qcraft-wm generate`")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise DatasetError(f"{manifest_path}: format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        self._index: list[tuple[Path, int]] = []
        for shard in self.manifest["shards"]:
            path = self.root / shard["file"]
            if not path.is_file():
                raise DatasetError(f"{self.root}: shard {shard['file']} listed in the manifest is missing")
            self._index += [(path, i) for i in range(shard["clips"])]
        self._handles: dict[Path, Any] = {}
        self._names: dict[Path, set[str]] = {}  # the arrays each open shard holds
        self._provenance: dict[Path, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """Clip ``index``'s arrays by name: ``ARRAY_FIELDS``, ``time_s``, and those of
        ``OPTIONAL_ARRAY_FIELDS`` its shard holds."""
        path, row = self._index[index]
        handle = self._handles.get(path)
        if handle is None:
            handle = self._handles[path] = safe_open(str(path), framework="np")
            self._names[path] = set(handle.keys())
        names = (*ARRAY_FIELDS, "time_s", *(n for n in OPTIONAL_ARRAY_FIELDS if n in self._names[path]))
        return {name: handle.get_slice(name)[row] for name in names}

    def provenance(self, index: int) -> dict[str, Any]:
        path, _ = self._index[index]
        if path not in self._provenance:
            with safe_open(str(path), framework="np") as handle:
                self._provenance[path] = json.loads(handle.metadata()[METADATA_KEY])["provenance"]
        return self._provenance[path]

    def episode(self, index: int) -> str:
        """The episode clip ``index`` was cut from: its shard file (one episode per shard), under the folder."""
        path, _ = self._index[index]
        return str(Path(path).resolve())

    def cameras(self, index: int) -> tuple[PinholeCamera, ...]:
        """The cameras clip ``index`` was rendered with (one mount per episode), in rig order."""
        return tuple(camera_from_dict(c) for c in self.provenance(index)["cameras"])


def _atomic(path: Path, write) -> None:  # noqa: ANN001 - a callable taking the temporary path
    """Write via ``<path>.tmp`` + rename; a failure (disk full included) leaves nothing behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        reason = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise DatasetError(f"cannot write {path}: {reason}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
