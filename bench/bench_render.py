"""Rendering speed of the scene generator: frames/s for one camera on one core.

Simulates a short drive per map, then times only ``SceneRenderer.render`` on
the recorded snapshots (pinned to one CPU core, llvmpipe single-threaded).
Prints JSON; results are recorded in docs/data.md.

    python bench/bench_render.py [--maps a,b] [--frames 300] [--size 128] [--rig front]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from qcraft_world_model.data.agents import Pose2D
from qcraft_world_model.data.camera_rig import get_rig
from qcraft_world_model.data.renderer import SceneRenderer, SceneStyle
from qcraft_world_model.data.scene_geometry import build_scene_geometry
from qcraft_world_model.data.sumo_maps import prepare_scenario
from qcraft_world_model.data.traffic_sim import TrafficSimulation


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next(line for line in handle if line.startswith("flags")).split(":")[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith(("avx", "amx", "sse4")))


def drive(map_name: str, frames: int) -> tuple[list, object]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", default="berlin_adlershof,a10_motorway,braunschweig,random_grid")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rig", default="front")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    results = []
    for map_name in args.maps.split(","):
        snapshots, files = drive(map_name, args.frames)
        geometry = build_scene_geometry(files.net, seed=1)
        cameras = get_rig(args.rig, args.size, args.size)
        with SceneRenderer(geometry, cameras, SceneStyle.random(np.random.default_rng(1))) as renderer:
            for snapshot in snapshots[:10]:  # warm-up: shader compile, first uploads
                renderer.render(Pose2D(snapshot.ego.x, snapshot.ego.y, snapshot.ego.heading), snapshot.agents)
            times = []
            for snapshot in snapshots:
                start = time.perf_counter()
                renderer.render(Pose2D(snapshot.ego.x, snapshot.ego.y, snapshot.ego.heading), snapshot.agents)
                times.append(time.perf_counter() - start)
        results.append({"map": map_name, "frames": len(times), "cameras": len(cameras), "size": args.size,
                        "fps": len(times) / sum(times), "median_ms": statistics.median(times) * 1e3,
                        "p95_ms": float(np.percentile(times, 95) * 1e3),
                        "static_triangles": geometry.triangle_count(), "roadside_boxes": len(geometry.boxes),
                        "mean_agents": float(np.mean([len(s.agents) for s in snapshots]))})
    print(json.dumps({"bench": "render", "results": results, "cores": 1, "supersample": 2,
                      "cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_flags()}, indent=2))


if __name__ == "__main__":
    main()
