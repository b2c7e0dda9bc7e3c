"""Static 3D geometry of a SUMO road network: what the cameras see besides traffic.

A network becomes flat triangle meshes in the map frame, one per surface kind
(asphalt, sidewalk, crossing stripes, lane markings), cut into square tiles so
the renderer can skip what is out of view. Pure NumPy; the renderer decides
colours and lighting.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class Surface(enum.Enum):
    """Surface kinds, drawn bottom to top (the height offsets avoid z-fighting)."""

    ASPHALT = 0.00
    SIDEWALK = 0.12
    CROSSING = 0.015
    MARKING = 0.02


@dataclass
class TileMesh:
    """Triangles of one surface kind in one tile: (N, 3, 3) float32 map-frame vertices."""

    surface: Surface
    tile: tuple[int, int]
    triangles: np.ndarray


@dataclass(frozen=True)
class StaticBox:
    """A box standing on the ground beside the roads (a building, a tree's trunk or crown)."""

    x: float
    y: float
    yaw: float
    length: float
    width: float
    z0: float
    z1: float
    #: Colour role: "facade0".."facade3", "trunk", "crown".
    role: str


@dataclass
class SceneGeometry:
    """All static meshes of a network, the boxes beside its roads, and its extent."""

    meshes: list[TileMesh]
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    tile_size: float
    boxes: list[StaticBox] = field(default_factory=list)

    def triangle_count(self) -> int:
        return sum(len(m.triangles) for m in self.meshes)


# Lane markings: dashes 3 m long every 9 m (German urban "Leitlinie" proportions), 0.15 m wide.
DASH_LENGTH, DASH_GAP, MARKING_WIDTH = 3.0, 6.0, 0.15
STRIPE_WIDTH, STRIPE_GAP = 0.5, 0.5  # zebra crossing bars


def vertex_normals(points: np.ndarray) -> np.ndarray:
    """Left-pointing mitred normals at each vertex of a polyline, scaled to keep offsets parallel.

    Offsetting every vertex by ``normal * d`` moves each segment sideways by
    exactly ``d`` (the stretch is capped at sharp hairpins).
    """
    seg = np.diff(points, axis=0)
    seg /= np.linalg.norm(seg, axis=1, keepdims=True)
    normals = np.stack([-seg[:, 1], seg[:, 0]], axis=1)
    result = np.empty_like(points)
    result[0], result[-1] = normals[0], normals[-1]
    if len(points) > 2:
        mitre = normals[:-1] + normals[1:]
        length = np.linalg.norm(mitre, axis=1, keepdims=True)
        mitre = np.where(length > 1e-6, mitre / np.maximum(length, 1e-6), normals[1:])
        cos_half = np.clip(np.sum(mitre * normals[1:], axis=1, keepdims=True), 0.35, 1.0)
        result[1:-1] = mitre / cos_half
    return result


def polyline_strip(points: np.ndarray, width: float) -> np.ndarray:
    """Triangles covering a polyline widened to ``width`` (mitred joins), (N, 3, 2)."""
    points = _dedupe(np.asarray(points, dtype=np.float64))
    if len(points) < 2:
        return np.zeros((0, 3, 2))
    normals = vertex_normals(points)
    left = points + normals * width / 2
    right = points - normals * width / 2
    quads_a = np.stack([left[:-1], right[:-1], right[1:]], axis=1)
    quads_b = np.stack([left[:-1], right[1:], left[1:]], axis=1)
    return np.concatenate([quads_a, quads_b])


def polygon_triangles(points: np.ndarray) -> np.ndarray:
    """Triangles of a simple polygon (earcut), (N, 3, 2); degenerate input gives none."""
    points = _dedupe(np.asarray(points, dtype=np.float64))
    if len(points) > 2 and np.allclose(points[0], points[-1]):
        points = points[:-1]
    if len(points) < 3:
        return np.zeros((0, 3, 2))
    import mapbox_earcut  # imported here: only geometry building needs it

    index = mapbox_earcut.triangulate_float64(points, np.array([len(points)], dtype=np.uint32))
    return points[np.asarray(index, dtype=np.int64).reshape(-1, 3)]


def dashes(points: np.ndarray, dash: float = DASH_LENGTH, gap: float = DASH_GAP) -> list[np.ndarray]:
    """Sub-polylines of ``points`` for a dashed line, starting with a dash."""
    points = _dedupe(np.asarray(points, dtype=np.float64))
    if len(points) < 2:
        return []
    cumulative = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    pieces = []
    start = 0.0
    while start < cumulative[-1]:
        end = min(start + dash, cumulative[-1])
        inner = points[(cumulative > start) & (cumulative < end)]
        piece = np.vstack([_point_at(points, cumulative, start), inner, _point_at(points, cumulative, end)])
        pieces.append(piece)
        start += dash + gap
    return pieces


def offset_polyline(points: np.ndarray, distance: float) -> np.ndarray:
    """The polyline shifted sideways by ``distance`` (positive: to the left)."""
    points = _dedupe(np.asarray(points, dtype=np.float64))
    if len(points) < 2:
        return points
    return points + vertex_normals(points) * distance


def zebra_stripes(centre: np.ndarray, width: float) -> np.ndarray:
    """Bars of a zebra crossing across the walking direction ``centre``, (N, 3, 2)."""
    centre = _dedupe(np.asarray(centre, dtype=np.float64))
    if len(centre) < 2:
        return np.zeros((0, 3, 2))
    start, end = centre[0], centre[-1]
    length = float(np.linalg.norm(end - start))
    if length < 1e-3:
        return np.zeros((0, 3, 2))
    along = (end - start) / length
    across = np.array([-along[1], along[0]])
    bars = []
    position = STRIPE_GAP / 2
    while position + STRIPE_WIDTH <= length:
        mid = start + along * (position + STRIPE_WIDTH / 2)
        bars.append(polyline_strip(np.stack([mid - across * width / 2, mid + across * width / 2]), STRIPE_WIDTH))
        position += STRIPE_WIDTH + STRIPE_GAP
    return np.concatenate(bars) if bars else np.zeros((0, 3, 2))


def build_scene_geometry(net_file: str | Path, tile_size: float = 100.0, seed: int | None = 0) -> SceneGeometry:
    """Read a SUMO network and turn it into tiled surface meshes.

    With a ``seed``, buildings and trees are placed beside the roads (SUMO
    networks have none; without them a camera sees asphalt and sky only).
    """
    import sumolib  # heavy import, only for this

    net = sumolib.net.readNet(str(net_file), withInternal=True, withPedestrianConnections=True)
    parts: dict[Surface, list[np.ndarray]] = defaultdict(list)
    for node in net.getNodes():
        shape = node.getShape()
        if shape:
            parts[Surface.ASPHALT].append(polygon_triangles(np.array(shape)[:, :2]))
    for edge in net.getEdges():
        function = edge.getFunction()
        lanes = edge.getLanes()
        for lane in lanes:
            shape = np.array(lane.getShape())[:, :2]
            if function == "walkingarea":
                parts[Surface.SIDEWALK].append(polygon_triangles(shape))
            elif function == "crossing":
                parts[Surface.CROSSING].append(zebra_stripes(shape, lane.getWidth() * 0.9))
            elif _is_sidewalk(lane):
                parts[Surface.SIDEWALK].append(polyline_strip(shape, lane.getWidth()))
            elif _is_drivable(lane):
                parts[Surface.ASPHALT].append(polyline_strip(shape, lane.getWidth()))
        if function == "" and lanes:
            parts[Surface.MARKING].extend(_lane_markings(lanes))
    xmin, ymin, xmax, ymax = net.getBBoxXY()[0] + net.getBBoxXY()[1]
    meshes = _tile(parts, tile_size)
    boxes = []
    if seed is not None:
        occupied = _Occupancy((xmin - 60, ymin - 60, xmax + 60, ymax + 60))
        for chunks in parts.values():
            for chunk in chunks:
                occupied.mark(chunk, margin=1)
        roads = [np.array(lane.getShape())[:, :2] for edge in net.getEdges() if edge.getFunction() == ""
                 for lane in edge.getLanes()[:1]]
        widths = [sum(lane.getWidth() for lane in edge.getLanes()) for edge in net.getEdges()
                  if edge.getFunction() == ""]
        boxes = place_roadside_boxes(roads, widths, occupied, np.random.default_rng(seed))
    return SceneGeometry(meshes, (xmin, ymin, xmax, ymax), tile_size, boxes)


class _Occupancy:
    """A coarse raster of what the ground is already used for, to keep boxes off roads."""

    def __init__(self, bounds: tuple[float, float, float, float], resolution: float = 1.0) -> None:
        xmin, ymin, xmax, ymax = bounds
        # Very large maps get a coarser raster to bound memory (about 64 M cells at most).
        area = (xmax - xmin) * (ymax - ymin)
        self.resolution = max(resolution, float(np.sqrt(area / 64e6)))
        self.origin = np.array([xmin, ymin])
        shape = (int((ymax - ymin) / self.resolution) + 1, int((xmax - xmin) / self.resolution) + 1)
        self.grid = np.zeros(shape, np.uint8)

    def _pixels(self, polygon: np.ndarray) -> np.ndarray:
        return np.round((polygon - self.origin) / self.resolution).astype(np.int32)

    def mark(self, triangles: np.ndarray, margin: float = 0.0) -> None:
        """Mark (N, k, 2) polygons as occupied, grown by ``margin`` metres."""
        import cv2

        polygons = [self._pixels(t) for t in triangles]
        cv2.fillPoly(self.grid, polygons, 1)
        if margin > 0:
            for polygon in polygons:
                cv2.polylines(self.grid, [polygon], True, 1, thickness=max(1, int(2 * margin / self.resolution)))

    def free(self, polygon: np.ndarray) -> bool:
        """Whether a polygon lies on unused ground inside the raster."""
        import cv2

        pixels = self._pixels(polygon)
        if pixels.min() < 0 or pixels[:, 0].max() >= self.grid.shape[1] or pixels[:, 1].max() >= self.grid.shape[0]:
            return False
        x0, y0 = pixels.min(axis=0)
        x1, y1 = pixels.max(axis=0) + 1
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [pixels - [x0, y0]], 1)
        return not np.any(self.grid[y0:y1, x0:x1] & mask)


def box_footprint(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    """Corners (4, 2) of a rectangle centred at (x, y), its length along ``yaw``."""
    c, s_ = np.cos(yaw), np.sin(yaw)
    along, across = np.array([c, s_]) * length / 2, np.array([-s_, c]) * width / 2
    centre = np.array([x, y])
    return np.stack([centre - along - across, centre + along - across, centre + along + across,
                     centre - along + across])


def box_triangles(box: StaticBox) -> tuple[np.ndarray, np.ndarray]:
    """The five visible faces of a standing box: vertices (30, 3) and face normals (30, 3)."""
    corners2 = box_footprint(box.x, box.y, box.yaw, box.length, box.width)
    bottom = np.concatenate([corners2, np.full((4, 1), box.z0)], axis=1)
    top = np.concatenate([corners2, np.full((4, 1), box.z1)], axis=1)
    vertices, normals = [], []
    for i in range(4):  # sides, counter-clockwise seen from outside
        j = (i + 1) % 4
        quad = (bottom[i], bottom[j], top[j], top[i])
        edge = corners2[j] - corners2[i]
        outward = np.array([edge[1], -edge[0], 0.0]) / max(np.linalg.norm(edge), 1e-9)
        vertices += [quad[0], quad[1], quad[2], quad[0], quad[2], quad[3]]
        normals += [outward] * 6
    vertices += [top[0], top[1], top[2], top[0], top[2], top[3]]
    normals += [np.array([0.0, 0.0, 1.0])] * 6
    return np.array(vertices), np.array(normals)


def place_roadside_boxes(roads: list[np.ndarray], road_widths: list[float], occupied: _Occupancy,
                         rng: np.random.Generator) -> list[StaticBox]:
    """Buildings set back from the roads and trees at their edges, never on roads or each other."""
    boxes: list[StaticBox] = []
    for shape, road_width in zip(roads, road_widths):
        shape = _dedupe(shape)
        if len(shape) < 2:
            continue
        cumulative = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(shape, axis=0), axis=1))])
        for side in (1.0, -1.0):
            position = float(rng.uniform(0, 10))
            while position < cumulative[-1]:
                index = int(np.clip(np.searchsorted(cumulative, position) - 1, 0, len(shape) - 2))
                direction = shape[index + 1] - shape[index]
                yaw = float(np.arctan2(direction[1], direction[0]))
                normal = np.array([-np.sin(yaw), np.cos(yaw)]) * side
                point = _point_at(shape, cumulative, position)
                if rng.random() < 0.35:  # a tree at the kerb
                    spot = point + normal * (road_width + rng.uniform(1.5, 3.0))
                    crown = float(rng.uniform(2.5, 4.5))
                    footprint = box_footprint(spot[0], spot[1], yaw, crown, crown)
                    if occupied.free(footprint):
                        occupied.mark(footprint[None])
                        height = float(rng.uniform(5, 9))
                        boxes.append(StaticBox(spot[0], spot[1], yaw, 0.35, 0.35, 0.0, height * 0.45, "trunk"))
                        boxes.append(StaticBox(spot[0], spot[1], yaw, crown, crown, height * 0.4, height, "crown"))
                length, depth = float(rng.uniform(10, 30)), float(rng.uniform(8, 16))
                spot = point + normal * (road_width + rng.uniform(4, 10) + depth / 2)
                footprint = box_footprint(spot[0], spot[1], yaw, length, depth)
                if rng.random() < 0.8 and occupied.free(footprint):
                    occupied.mark(footprint[None], margin=1)
                    boxes.append(StaticBox(spot[0], spot[1], yaw, length, depth, 0.0,
                                           float(rng.uniform(5, 24)), f"facade{int(rng.integers(4))}"))
                position += length + float(rng.uniform(3, 12))
    return boxes


def _is_sidewalk(lane) -> bool:  # noqa: ANN001 - a sumolib lane
    return lane.allows("pedestrian") and not lane.allows("passenger") and not lane.allows("bicycle") \
        or lane.getPermissions() == {"pedestrian"}


def _is_drivable(lane) -> bool:  # noqa: ANN001
    return any(lane.allows(vclass) for vclass in ("passenger", "bus", "truck", "bicycle", "motorcycle"))


def _lane_markings(lanes) -> list[np.ndarray]:  # noqa: ANN001 - sumolib lanes of one edge, right to left
    """Dashed lines between drivable lanes of one edge, a solid line at its right edge."""
    drivable = [lane for lane in lanes if _is_drivable(lane) and not _is_sidewalk(lane)]
    marks = []
    for right, left in zip(drivable, drivable[1:]):
        boundary = (np.array(right.getShape())[:, :2] + np.array(left.getShape())[:, :2]) / 2 \
            if len(right.getShape()) == len(left.getShape()) else None
        if boundary is not None:
            marks += [polyline_strip(piece, MARKING_WIDTH) for piece in dashes(boundary)]
    if drivable:
        outer = drivable[0]
        edge_line = offset_polyline(np.array(outer.getShape())[:, :2], -(outer.getWidth() / 2 - 0.25))
        marks.append(polyline_strip(edge_line, MARKING_WIDTH))
    return marks


def _tile(parts: dict[Surface, list[np.ndarray]], tile_size: float) -> list[TileMesh]:
    meshes = []
    for surface, chunks in parts.items():
        chunks = [c for c in chunks if len(c)]
        if not chunks:
            continue
        tris2 = np.concatenate(chunks)
        tris = np.concatenate([tris2, np.full(tris2.shape[:2] + (1,), surface.value)], axis=2).astype(np.float32)
        keys = np.floor(tris2.mean(axis=1) / tile_size).astype(np.int64)
        order = np.lexsort((keys[:, 1], keys[:, 0]))
        keys, tris = keys[order], tris[order]
        boundaries = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
        for start, end in zip(np.r_[0, boundaries], np.r_[boundaries, len(tris)]):
            meshes.append(TileMesh(surface, (int(keys[start, 0]), int(keys[start, 1])), tris[start:end]))
    return meshes


def _dedupe(points: np.ndarray) -> np.ndarray:
    """Drop consecutive duplicate points (SUMO shapes have them)."""
    if len(points) < 2:
        return points
    keep = np.r_[True, np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-6]
    return points[keep]


def _point_at(points: np.ndarray, cumulative: np.ndarray, distance: float) -> np.ndarray:
    index = int(np.clip(np.searchsorted(cumulative, distance) - 1, 0, len(points) - 2))
    span = cumulative[index + 1] - cumulative[index]
    t = 0.0 if span <= 0 else (distance - cumulative[index]) / span
    return points[index] + t * (points[index + 1] - points[index])

