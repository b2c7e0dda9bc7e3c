"""What a camera's resolution allows: the range error a small image error causes, per distance band.

An agent is placed where the ray through its ground-contact pixel meets the ground.
A vertical image error of δ pixels moves that point along the ground; far away the
ray grazes the ground and the same δ costs many metres. The table makes that visible
before anyone blames the network: it is the error a perfect detector with δ-pixel
keypoints would make, from the camera's focal length, height and pitch alone.
"""

from __future__ import annotations

import numpy as np

from qcraft_world_model.model.geometry import CameraGeometry

BANDS_M = ((0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 50.0))


def range_error(camera: CameraGeometry, distance_m: float, pixel_error: float) -> float:
    """Metres the ground point straight ahead at ``distance_m`` moves for ``pixel_error`` px of vertical error
    (the larger of the two directions; inf when the ray leaves the ground)."""
    point = np.array([[camera.translation[0] + distance_m, camera.translation[1], 0.0]])
    pixel, depth = camera.project(point)
    errors = []
    for sign in (1.0, -1.0):
        moved = camera.lift(pixel + [0.0, sign * pixel_error], depth, max_ground_m=1e6)
        errors.append(float(np.linalg.norm(moved[0, :2] - point[0, :2])) if moved[0, 2] < 1e-6 else np.inf)
    return max(errors)


def bound_table(camera: CameraGeometry, pixel_errors: tuple[float, ...] = (0.5, 1.0)) -> list[dict]:
    """Per distance band (at its far edge) the range error for each pixel error."""
    rows = []
    for low, high in BANDS_M:
        rows.append({"band": f"{low:g}-{high:g}", "at_m": high,
                     **{f"{e:g}px": round(range_error(camera, high, e), 2) for e in pixel_errors},
                     "agent_px_tall": round(camera.fy * 1.5 / high, 1)})
    return rows


def bound_markdown(camera: CameraGeometry, name: str) -> str:
    rows = bound_table(camera)
    lines = [f"Camera of `{name}`: {camera.width}x{camera.height} px, f = {camera.fx:.1f} px, "
             f"{camera.translation[2]:.2f} m high. Range error of a ground point straight ahead at the band's "
             "far edge, for a vertical image error of:", "",
             "| band (m) | 0.5 px | 1 px | a 1.5 m tall car spans |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['band']} | {row['0.5px']:.2f} m | {row['1px']:.2f} m | {row['agent_px_tall']:.1f} px |")
    return "\n".join(lines) + "\n"
