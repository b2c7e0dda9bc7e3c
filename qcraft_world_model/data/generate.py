"""``qcraft-wm generate``: clip datasets from many episodes, in parallel, resumable.

Splits use different maps *and* different seeds: training on the motorway,
Ingolstadt, Braunschweig and three kinds of generated towns; evaluation on
Berlin Adlershof, a real urban map the model never sees in training.

A rerun of the same command resumes; one whose plan would replace or orphan
shards already in the folder needs ``overwrite``, and a folder holding anything
but this tool's shards is never written into (see ``out_folder.py``).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from qcraft_world_model import __version__
from qcraft_world_model.data.clip_dataset import (
    DatasetError,
    finished_shard,
    shard_name,
    sidecar_path,
    write_manifest,
    write_shard,
)
from qcraft_world_model.data.episode import EpisodeConfig, run_episode
from qcraft_world_model.data.out_folder import foreign_entries
from qcraft_world_model.data.sumo_maps import get_map

TRAIN_MAPS = ("a10_motorway", "ingolstadt", "braunschweig", "random_grid", "random_spider", "random_organic")
EVAL_MAPS = ("berlin_adlershof",)
#: Seeds of the evaluation split start here, so no episode seed is shared with training.
EVAL_SEED_BASE = 100_000


@dataclass(frozen=True)
class DatasetPlan:
    """What to generate: a split, its maps, how many clips, in episodes of how many."""

    split: str
    maps: tuple[str, ...]
    clips: int
    clips_per_episode: int = 25
    seed_base: int = 1
    rig: str = "front"
    #: Frame width, px, and height (None: square).
    image_size: int = 128
    image_height: int | None = None
    #: Camera mount variation (camera_rig.MOUNTS); None: ``wide`` for training, ``standard`` for evaluation.
    mount: str | None = None
    #: How vehicles are drawn (agent_shapes.VEHICLE_SHAPES).
    vehicle_shapes: str = "fixed"

    @classmethod
    def for_split(cls, split: str, clips: int, **overrides: Any) -> DatasetPlan:
        if split == "train":
            return cls("train", TRAIN_MAPS, clips, **overrides)
        if split == "eval":
            return cls("eval", EVAL_MAPS, clips, **{"seed_base": EVAL_SEED_BASE, **overrides})
        raise DatasetError(f"unknown split {split!r}; use train or eval")

    def episodes(self) -> list[EpisodeConfig]:
        """Episodes round-robin over the maps, one seed each."""
        for name in self.maps:
            get_map(name)  # fail before any work on an unknown map
        count = -(-self.clips // self.clips_per_episode)
        episodes = []
        for i in range(count):
            clips = min(self.clips_per_episode, self.clips - i * self.clips_per_episode)
            episodes.append(EpisodeConfig(map=self.maps[i % len(self.maps)], seed=self.seed_base + i, clips=clips,
                                          rig=self.rig, image_size=self.image_size,
                                          image_height=self.image_height,
                                          mount=self.mount or ("wide" if self.split == "train" else "standard"),
                                          vehicle_shapes=self.vehicle_shapes))
        return episodes


@dataclass
class GenerationReport:
    out: Path
    clips: int
    shards: int
    reused_shards: int
    failed: list[str]
    seconds: float
    frames_rendered: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "out": str(self.out)}


def run_job(config: EpisodeConfig, out: Path) -> dict[str, Any]:
    """Generate one episode's shard (runs in a worker process)."""
    import libsumo
    from panda3d.core import PandaSystem

    spec = get_map(config.map)
    start = time.perf_counter()
    clips = list(run_episode(config))
    if not clips:
        raise DatasetError(f"map {config.map!r} seed {config.seed}: no clip could be made "
                           f"within {config.max_sim_s:g} simulated seconds")
    provenance = {
        "map": config.map, "map_description": spec.description, "data_source": spec.source,
        "seed": config.seed, "episode": asdict(config),
        "cameras": clips[0].meta["cameras"], "style": clips[0].meta["style"],
        "egos": sorted({clip.meta["ego"] for clip in clips}),
        "agents_dropped": sum(clip.meta["agents_dropped"] for clip in clips),
        "versions": {"qcraft_world_model": __version__, "sumo": libsumo.getVersion()[1],
                     "panda3d": PandaSystem.getVersionString()},
    }
    sidecar = write_shard(out / shard_name(config.map, config.seed), clips, provenance)
    return {**sidecar, "seconds": time.perf_counter() - start}


def stale_shards(out: Path, episodes: list[EpisodeConfig]) -> list[str]:
    """Shard files in ``out`` that ``episodes`` would not reuse: shards of no planned episode, and
    finished shards of a planned one made with other settings (resuming would keep them as they are)."""
    planned = {shard_name(e.map, e.seed): e for e in episodes}
    # A sidecar whose shard is gone names its shard too.
    names = sorted({p.with_suffix(".safetensors").name for p in (*out.glob("*-seed*.safetensors"),
                                                                  *out.glob("*-seed*.json"))})
    stale = []
    for name in names:
        episode = planned.get(name)
        info = finished_shard(out / name) if episode is not None else None
        if episode is None or (info is not None and not _same_episode(info.get("episode"), episode)):
            stale.append(name)
    return stale


def _same_episode(recorded: Any, planned: EpisodeConfig) -> bool:
    """Whether a sidecar's ``episode`` is ``planned``; a field it lacks (a shard older than the field)
    held that field's default."""
    if not isinstance(recorded, dict):
        return False
    values = json.loads(json.dumps(asdict(planned)))  # as the sidecar stored them: tuples are lists
    defaults = {f.name: f.default for f in fields(EpisodeConfig) if f.default is not MISSING}
    return all(recorded.get(key, defaults.get(key, value)) == value for key, value in values.items())


def _claim_dataset_folder(out: Path, episodes: list[EpisodeConfig], overwrite: bool) -> None:
    """Refuse an ``out`` holding anything but this tool's shards, or shards of another plan unless
    ``overwrite`` (then those, and only those, are deleted)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DatasetError(f"cannot create output folder {out}: it exists and is not a folder")
    if not out.exists():
        return
    foreign = foreign_entries(out, "clips")
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise DatasetError(f"{out} holds what is not a clip dataset of qcraft-wm ({shown}): not writing into it, "
                           "choose another --out")
    stale = stale_shards(out, episodes)
    if stale and not overwrite:
        raise DatasetError(f"{out} holds {len(stale)} shard(s) this plan would not keep (e.g. {stale[0]}): rerun "
                           "with the settings that made them to resume, pass --overwrite to replace them, "
                           "or choose another --out")
    for name in stale:
        shard = out / name
        sidecar_path(shard).unlink(missing_ok=True)  # first: a shard without its sidecar counts as unfinished
        shard.unlink(missing_ok=True)


#: Pools a generation may start: a worker that dies (a segfault in a native library, the OOM killer)
#: breaks its pool and fails every episode in flight; those go to a fresh pool, at most this many times.
MAX_POOLS = 3


def generate_dataset(out: str | Path, plan: DatasetPlan, workers: int = 2,
                     progress: Callable[[int, int], None] | None = None, overwrite: bool = False,
                     job: Callable[[EpisodeConfig, Path], dict[str, Any]] = run_job) -> GenerationReport:
    """Generate (or finish) a dataset; finished shards are kept, so a rerun resumes.

    ``overwrite``: delete the shards in ``out`` this plan would not keep (another plan's) instead of
    refusing; files that are not this tool's are never touched (DatasetError). ``job`` makes one
    episode's shard in a worker process (``run_job``). A worker that dies takes its pool with it: the
    episodes that pool had not finished run again in a fresh one (``MAX_POOLS`` pools in all), so one
    crash costs one episode's work, not the rest of the run.
    """
    out = Path(out)
    episodes = plan.episodes()
    _claim_dataset_folder(out, episodes, overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"cannot create output folder {out}: {err.strerror}") from err
    start = time.perf_counter()
    done: dict[str, dict[str, Any]] = {}
    todo = []
    for episode in episodes:
        info = finished_shard(out / shard_name(episode.map, episode.seed))
        if info is not None:
            done[info["file"]] = info
        else:
            todo.append(episode)
    reused = len(done)
    failed: list[str] = []
    total = sum(e.clips for e in episodes)
    made = sum(info["clips"] for info in done.values())
    if progress:
        progress(made, total)
    context = multiprocessing.get_context("spawn")  # libsumo and Panda3D: one fresh process each
    for pools in range(1, MAX_POOLS + 1):
        if not todo:
            break
        broken: list[tuple[EpisodeConfig, BaseException]] = []
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context, max_tasks_per_child=1) as pool:
            pending: dict[Future, EpisodeConfig] = {pool.submit(job, e, out): e for e in todo}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    episode = pending.pop(future)
                    try:
                        info = future.result()
                    except BrokenProcessPool as err:  # a worker died: this episode may be innocent
                        broken.append((episode, err))
                        continue
                    except Exception as err:  # one bad episode must not sink the others
                        failed.append(f"{episode.map} seed {episode.seed}: {err}")
                        continue
                    done[info["file"]] = info
                    made += info["clips"]
                    if progress:
                        progress(made, total)
        todo = [episode for episode, _ in broken]
        if todo and pools == MAX_POOLS:
            failed += [f"{e.map} seed {e.seed}: a worker process died in each of {MAX_POOLS} pools ({err})"
                       for e, err in broken]
    shards = [{k: v for k, v in info.items() if k != "seconds"} for info in done.values()]
    if shards:
        write_manifest(out, plan.split, shards, {
            "plan": asdict(plan), "agent_features": ["x", "y", "heading", "vx", "vy"],
            "attribution": sorted({get_map(s["map"]).source for s in shards}),
        })
    frames = sum(s["clips"] for s in shards) * (episodes[0].frame_steps if episodes else 0)
    return GenerationReport(out, sum(s["clips"] for s in shards), len(shards), reused, failed,
                            time.perf_counter() - start, frames)


def describe(report: GenerationReport) -> str:
    lines = [f"{report.out}: {report.clips} clips in {report.shards} shards "
             f"({report.reused_shards} reused) in {report.seconds:.0f} s"]
    lines += [f"  FAILED {line}" for line in report.failed]
    return "\n".join(lines)
