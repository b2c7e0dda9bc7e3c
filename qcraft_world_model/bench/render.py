"""``qcraft-wm bench render``: rendering speed of the scene generator, frames/s for one camera on one core.

Simulates a short drive per map, then times only ``SceneRenderer.render`` on the recorded
snapshots (the process pinned to one CPU core, llvmpipe single-threaded). Results are recorded
in docs/data.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from qcraft_world_model.data.agents import Pose2D
from qcraft_world_model.data.camera_rig import get_rig
from qcraft_world_model.data.renderer import SceneRenderer, SceneStyle
from qcraft_world_model.data.scene_geometry import build_scene_geometry
from qcraft_world_model.data.sumo_maps import prepare_scenario
from qcraft_world_model.data.traffic_sim import TrafficSimulation

MAPS = ("berlin_adlershof", "a10_motorway", "braunschweig", "random_grid")


def cpu_flags() -> list[str]:
    """The CPU's vector-extension flags (AVX*, AMX*, SSE4*): what the software rasteriser can use."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next(line for line in handle if line.startswith("flags")).split(":")[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith(("avx", "amx", "sse4")))


def drive(map_name: str, frames: int) -> tuple[list, Any]:
    """``frames`` traffic snapshots of one ego on ``map_name`` (a new ego when one leaves), and the scenario."""
    files = prepare_scenario(map_name, 1)
    with TrafficSimulation(files) as sim:
        sim.advance(120)
        rng = np.random.default_rng(0)
        while sim.choose_ego(rng, files.map.min_ego_route_m) is None:
            sim.advance(1.0)
        snapshots = []
        while len(snapshots) < frames:
            snapshot = sim.step()
            if snapshot is None:
                sim.ego_id = None
                while sim.choose_ego(rng, files.map.min_ego_route_m) is None:
                    sim.advance(1.0)
                continue
            snapshots.append(snapshot)
    return snapshots, files


def bench_render(maps: tuple[str, ...] = MAPS, frames: int = 300, size: int = 128, rig: str = "front",
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Frames/s, median and p95 render time per map; ``progress(done, total)`` after each map.

    Pins this process to one core (for good: call it in a process of its own, as the CLI does)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    results = []
    if progress is not None:
        progress(0, len(maps))
    for index, map_name in enumerate(maps):
        snapshots, files = drive(map_name, frames)
        geometry = build_scene_geometry(files.net, seed=1)
        cameras = get_rig(rig, size, size)
        with SceneRenderer(geometry, cameras, SceneStyle.random(np.random.default_rng(1))) as renderer:
            for snapshot in snapshots[:10]:  # warm-up: shader compile, first uploads
                renderer.render(Pose2D(snapshot.ego.x, snapshot.ego.y, snapshot.ego.heading), snapshot.agents)
            times = []
            for snapshot in snapshots:
                start = time.perf_counter()
                renderer.render(Pose2D(snapshot.ego.x, snapshot.ego.y, snapshot.ego.heading), snapshot.agents)
                times.append(time.perf_counter() - start)
        results.append({"map": map_name, "frames": len(times), "cameras": len(cameras), "size": size,
                        "fps": len(times) / sum(times), "median_ms": statistics.median(times) * 1e3,
                        "p95_ms": float(np.percentile(times, 95) * 1e3),
                        "static_triangles": geometry.triangle_count(), "roadside_boxes": len(geometry.boxes),
                        "mean_agents": float(np.mean([len(s.agents) for s in snapshots]))})
        if progress is not None:
            progress(index + 1, len(maps))
    return {"bench": "render", "results": results, "cores": 1, "supersample": 2,
            "cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_flags()}
