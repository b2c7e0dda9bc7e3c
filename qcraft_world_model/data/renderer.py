"""Offscreen camera rendering of a traffic scene with Panda3D (EGL, no display).

Static road geometry from ``scene_geometry``, agents as shaded boxes, sky,
ground, a sun and fog, seen through the rig's pinhole cameras. Each scene gets
its own palette and lighting (``SceneStyle.random``) so a model cannot key on
one look. One renderer per process; rendering is deterministic for a given
scene, style and Mesa build.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from qcraft_world_model.data.agents import AgentLabel, AgentState, Pose2D, stable_id
from qcraft_world_model.data.camera_rig import PinholeCamera
from qcraft_world_model.data.scene_geometry import SceneGeometry, Surface, box_triangles

RGB = tuple[float, float, float]


class RenderError(RuntimeError):
    """No offscreen OpenGL context (EGL/Mesa missing) or a failed buffer."""


@dataclass(frozen=True)
class SceneStyle:
    """Colours and light of one scene."""

    sky: RGB = (0.62, 0.75, 0.92)
    ground: RGB = (0.36, 0.45, 0.28)
    asphalt: RGB = (0.30, 0.30, 0.32)
    sidewalk: RGB = (0.62, 0.60, 0.57)
    marking: RGB = (0.92, 0.92, 0.90)
    sun_heading_deg: float = 30.0
    sun_elevation_deg: float = 45.0
    sun: float = 0.75
    ambient: float = 0.45
    fog_start_m: float = 90.0
    fog_end_m: float = 260.0
    facades: tuple[RGB, ...] = ((0.78, 0.72, 0.62), (0.6, 0.6, 0.62), (0.62, 0.35, 0.28), (0.85, 0.85, 0.82))
    foliage: RGB = (0.2, 0.4, 0.18)
    #: Body colours vehicles are painted with (chosen per agent id).
    palette: tuple[RGB, ...] = ((0.8, 0.1, 0.1), (0.1, 0.2, 0.7), (0.85, 0.85, 0.85), (0.1, 0.1, 0.1),
                                (0.5, 0.5, 0.55), (0.9, 0.7, 0.1), (0.15, 0.45, 0.2), (0.95, 0.95, 0.95))

    @classmethod
    def random(cls, rng: np.random.Generator) -> SceneStyle:
        """A plausible random look: daylight to dusk, dry to wet asphalt, grass to dry fields."""
        def jitter(base: RGB, amount: float) -> RGB:
            return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0, 1)) for c in base)

        daylight = float(rng.uniform(0.55, 1.0))
        sky = jitter((0.55 * daylight + 0.1, 0.68 * daylight + 0.1, 0.9 * daylight + 0.05), 0.08)
        grey = float(rng.uniform(0.18, 0.42))
        return cls(
            sky=sky,
            ground=jitter((0.33, 0.42, 0.25), 0.1),
            asphalt=jitter((grey, grey, grey + 0.02), 0.02),
            sidewalk=jitter((0.6, 0.58, 0.55), 0.08),
            marking=jitter((0.9, 0.9, 0.88), 0.06),
            sun_heading_deg=float(rng.uniform(0, 360)),
            sun_elevation_deg=float(rng.uniform(15, 70)),
            sun=float(rng.uniform(0.45, 0.9)) * daylight,
            ambient=float(rng.uniform(0.3, 0.55)),
            fog_start_m=float(rng.uniform(60, 120)),
            fog_end_m=float(rng.uniform(200, 320)),
            palette=tuple(tuple(float(c) for c in rng.uniform(0.05, 0.95, 3)) for _ in range(10)),
            facades=tuple(jitter(base, 0.12) for base in cls.facades),
            foliage=jitter((0.2, 0.4, 0.18), 0.08),
        )

    def static_color(self, role: str) -> RGB:
        """Colour of a roadside box role (facade0..3, trunk, crown)."""
        if role.startswith("facade"):
            return self.facades[int(role[6:]) % len(self.facades)]
        return {"trunk": (0.35, 0.25, 0.15), "crown": self.foliage}[role]

    def surface_color(self, surface: Surface) -> RGB:
        return {Surface.ASPHALT: self.asphalt, Surface.SIDEWALK: self.sidewalk,
                Surface.CROSSING: self.marking, Surface.MARKING: self.marking}[surface]


#: Boxes making up each agent class: (x0, x1, y half-width fraction, z0, z1, colour role), in units
#: of the agent's length, width and height. Roles: body (palette), glass, dark, skin.
_SHAPES: dict[AgentLabel, tuple[tuple[float, float, float, float, float, str], ...]] = {
    AgentLabel.CAR: ((-0.5, 0.5, 0.5, 0.12, 0.58, "body"), (-0.32, 0.18, 0.45, 0.58, 1.0, "glass")),
    AgentLabel.TRUCK: ((-0.5, 0.3, 0.5, 0.12, 1.0, "body"), (0.32, 0.5, 0.48, 0.12, 0.8, "glass")),
    AgentLabel.BUS: ((-0.5, 0.5, 0.5, 0.1, 1.0, "body"), (-0.48, 0.48, 0.51, 0.5, 0.85, "glass")),
    AgentLabel.TRAILER: ((-0.5, 0.5, 0.5, 0.15, 1.0, "body"),),
    AgentLabel.MOTORCYCLE: ((-0.5, 0.5, 0.3, 0.1, 0.55, "dark"), (-0.25, 0.1, 0.5, 0.55, 1.0, "body")),
    AgentLabel.BICYCLE: ((-0.5, 0.5, 0.15, 0.1, 0.55, "dark"), (-0.25, 0.05, 0.5, 0.55, 1.0, "body")),
    AgentLabel.PEDESTRIAN: ((-0.5, 0.5, 0.5, 0.0, 0.5, "dark"), (-0.5, 0.5, 0.5, 0.5, 0.87, "body"),
                            (-0.3, 0.3, 0.3, 0.87, 1.0, "skin")),
    AgentLabel.UNKNOWN: ((-0.5, 0.5, 0.5, 0.0, 1.0, "body"),),
}
_ROLE_COLORS = {"glass": (0.12, 0.14, 0.18), "dark": (0.08, 0.08, 0.08), "skin": (0.85, 0.68, 0.55)}


class SceneRenderer:
    """Renders the rig's cameras for one scene; reuse across frames, close at the end."""

    def __init__(self, geometry: SceneGeometry, cameras: Sequence[PinholeCamera],
                 style: SceneStyle | None = None, supersample: int = 2) -> None:
        self.cameras = tuple(cameras)
        self.style = style or SceneStyle()
        self.supersample = supersample
        core = _panda()
        self._core = core
        self._engine = core.GraphicsEngine.getGlobalPtr()
        self._pipe = _pipe(core)
        self._root = core.NodePath("scene")
        self._buffers = []
        self._textures = []
        self._camera_nodes = []
        self._ego_node = self._root.attachNewNode("ego")
        try:
            for camera in self.cameras:
                self._add_camera(camera)
        except Exception:
            self.close()
            raise
        self._setup_lights_and_fog()
        self._add_static(geometry)
        self._ground = self._ground_grid()
        self._ground.reparentTo(self._root)
        self._ground.setColor(*self.style.ground, 1)
        self._unit_parts = {role: self._box_node(role, -0.5, 0.5, -0.5, 0.5, 0.0, 1.0) for role in ("box",)}
        self._pool: dict[AgentLabel, list] = {label: [] for label in AgentLabel}

    # -- public ------------------------------------------------------------------

    def render(self, ego: Pose2D, agents: Sequence[AgentState]) -> dict[str, np.ndarray]:
        """Images (H, W, 3) uint8 RGB per camera name, for the ego at ``ego`` among ``agents``."""
        self._ego_node.setPos(ego.x, ego.y, 0.0)
        self._ego_node.setH(math.degrees(ego.heading))
        self._ground.setPos(ego.x, ego.y, 0)
        self._place_agents(agents)
        self._engine.renderFrame()
        images = {}
        for camera, texture in zip(self.cameras, self._textures):
            raw = texture.getRamImageAs("RGB")
            if raw is None or len(raw) == 0:
                raise RenderError(f"camera {camera.name}: the offscreen buffer returned no image")
            size = (camera.height * self.supersample, camera.width * self.supersample)
            image = np.frombuffer(raw, np.uint8).reshape(size + (3,))[::-1]  # OpenGL rows run bottom-up
            if self.supersample > 1:
                image = cv2.resize(image, (camera.width, camera.height), interpolation=cv2.INTER_AREA)
            images[camera.name] = np.ascontiguousarray(image)
        return images

    def close(self) -> None:
        """Release the offscreen buffers (the GL context stays for the next renderer)."""
        for buffer in self._buffers:
            self._engine.removeWindow(buffer)
        self._buffers.clear()
        self._root.removeNode()

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- set-up ------------------------------------------------------------------

    def _add_camera(self, camera: PinholeCamera) -> None:
        core = self._core
        fb = core.FrameBufferProperties()
        fb.setRgbColor(True)
        fb.setRgbaBits(8, 8, 8, 0)
        fb.setDepthBits(24)
        size = core.WindowProperties.size(camera.width * self.supersample, camera.height * self.supersample)
        buffer = self._engine.makeOutput(self._pipe, f"cam-{camera.name}", -1, fb, size,
                                         core.GraphicsPipe.BFRefuseWindow, None, None)
        if buffer is None:
            raise RenderError(f"could not create an offscreen buffer for camera {camera.name}")
        texture = core.Texture()
        buffer.addRenderTexture(texture, core.GraphicsOutput.RTMCopyRam)
        buffer.setClearColor((*self.style.sky, 1))
        lens = core.PerspectiveLens()
        lens.setFov(camera.hfov_deg, camera.vfov_deg)
        lens.setNearFar(0.3, 400.0)
        node = core.Camera(f"camera-{camera.name}", lens)
        node_path = self._ego_node.attachNewNode(node)
        node_path.setPos(camera.x, camera.y, camera.z)
        # Panda cameras look along +Y: heading -90 deg turns that onto the ego's +x.
        node_path.setHpr(camera.yaw_deg - 90.0, -camera.pitch_down_deg, 0.0)
        region = buffer.makeDisplayRegion()
        region.setCamera(node_path)
        self._buffers.append(buffer)
        self._textures.append(texture)
        self._camera_nodes.append(node_path)

    def _setup_lights_and_fog(self) -> None:
        """Sun, ambient light and haze in one small GLSL shader, per pixel.

        The fixed-function pipeline fogs per vertex, which greys out whole roads and
        the ground (their vertices lie hundreds of metres away); Panda's shader
        generator emits Cg, which the headless GL context cannot load.
        """
        core, style = self._core, self.style
        shader = core.Shader.make(core.Shader.SL_GLSL, vertex=_VERTEX_SHADER, fragment=_FRAGMENT_SHADER)
        self._root.setShader(shader)
        elevation, heading = math.radians(style.sun_elevation_deg), math.radians(style.sun_heading_deg)
        toward_sun = (math.cos(elevation) * math.cos(heading), math.cos(elevation) * math.sin(heading),
                      math.sin(elevation))
        self._root.setShaderInput("sun_dir", core.LVector3f(*toward_sun))
        self._root.setShaderInput("light", core.LVector2f(style.sun, style.ambient))
        self._root.setShaderInput("fog_color", core.LVector3f(*style.sky))
        self._root.setShaderInput("fog_range", core.LVector2f(style.fog_start_m, style.fog_end_m))

    def _add_static(self, geometry: SceneGeometry) -> None:
        for mesh in geometry.meshes:
            path = self._flat_mesh(f"{mesh.surface.name}-{mesh.tile}", mesh.triangles[:, :, :2],
                                   height=float(mesh.triangles[0, 0, 2]))
            path.reparentTo(self._root)
            path.setColor(*self.style.surface_color(mesh.surface), 1)
        # Boxes beside the roads: one mesh per (tile, colour role), so culling stays per tile.
        groups: dict[tuple, list] = {}
        for box in geometry.boxes:
            tile = (int(box.x // geometry.tile_size), int(box.y // geometry.tile_size))
            groups.setdefault((tile, box.role), []).append(box_triangles(box))
        for (tile, role), parts in sorted(groups.items()):
            vertices = np.concatenate([v for v, _ in parts])
            normals = np.concatenate([n for _, n in parts])
            path = self._mesh(f"{role}-{tile}", vertices, normals)
            path.reparentTo(self._root)
            path.setColor(*self.style.static_color(role), 1)

    def _ground_grid(self, extent: float = 500.0, cell: float = 25.0):  # noqa: ANN202
        """A tessellated ground plane that follows the ego.

        One huge quad vanishes under llvmpipe once its corners lie far outside the
        view, so the plane is cut into cells.
        """
        edges = np.arange(-extent, extent + cell, cell)
        x0, y0 = np.meshgrid(edges[:-1], edges[:-1])
        x0, y0 = x0.ravel(), y0.ravel()
        x1, y1 = x0 + cell, y0 + cell
        corners = [np.stack([x, y], axis=1) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        triangles2d = np.concatenate([np.stack([corners[0], corners[1], corners[2]], axis=1),
                                      np.stack([corners[0], corners[2], corners[3]], axis=1)])
        return self._flat_mesh("ground", triangles2d, height=-0.02)

    def _flat_mesh(self, name: str, triangles2d: np.ndarray, height: float):  # noqa: ANN202
        """A two-sided NodePath of upward-facing triangles (N, 3, 2) at ``height``."""
        vertices = np.concatenate([triangles2d.reshape(-1, 2), np.full((len(triangles2d) * 3, 1), height)], axis=1)
        normals = np.zeros_like(vertices)
        normals[:, 2] = 1.0
        path = self._mesh(name, vertices, normals)
        path.setTwoSided(True)
        return path

    def _mesh(self, name: str, vertices: np.ndarray, normals: np.ndarray):  # noqa: ANN202
        """A NodePath of triangles from consecutive vertex triples with their normals."""
        core = self._core
        data = core.GeomVertexData(name, core.GeomVertexFormat.getV3n3(), core.Geom.UHStatic)
        data.uncleanSetNumRows(len(vertices))
        memoryview(data.modifyArray(0)).cast("B")[:] = \
            np.concatenate([vertices, normals], axis=1).astype(np.float32).tobytes()
        primitive = core.GeomTriangles(core.Geom.UHStatic)
        primitive.addConsecutiveVertices(0, len(vertices))
        geom = core.Geom(data)
        geom.addPrimitive(primitive)
        node = core.GeomNode(name)
        node.addGeom(geom)
        return core.NodePath(node)

    def _box_node(self, name: str, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float):  # noqa: ANN202
        """An axis-aligned box with face normals."""
        corners = np.array([[x, y, z] for z in (z0, z1) for y in (y0, y1) for x in (x0, x1)], np.float32)
        faces = [
            ((4, 5, 7, 6), (0, 0, 1)), ((0, 2, 3, 1), (0, 0, -1)), ((0, 1, 5, 4), (0, -1, 0)),
            ((2, 6, 7, 3), (0, 1, 0)), ((1, 3, 7, 5), (1, 0, 0)), ((0, 4, 6, 2), (-1, 0, 0))]
        vertices, normals = [], []
        for quad, normal in faces:
            for a, b, c in ((quad[0], quad[1], quad[2]), (quad[0], quad[2], quad[3])):
                vertices += [corners[a], corners[b], corners[c]]
                normals += [normal] * 3
        return self._mesh(name, np.array(vertices), np.array(normals, np.float32))

    # -- agents ------------------------------------------------------------------

    def _agent_node(self, label: AgentLabel, index: int):  # noqa: ANN202
        pool = self._pool[label]
        while len(pool) <= index:
            holder = self._root.attachNewNode(f"{label.name}-{len(pool)}")
            for x0, x1, half, z0, z1, role in _SHAPES[label]:
                part = self._unit_parts["box"].copyTo(holder)
                part.setName(role)
                part.setPos((x0 + x1) / 2, 0, z0)
                part.setScale(x1 - x0, 2 * half, z1 - z0)
            pool.append(holder)
        return pool[index]

    def _place_agents(self, agents: Sequence[AgentState]) -> None:
        used = {label: 0 for label in AgentLabel}
        for agent in agents:
            node = self._agent_node(agent.label, used[agent.label])
            used[agent.label] += 1
            node.show()
            node.setPos(agent.x, agent.y, agent.z)
            node.setH(math.degrees(agent.heading))
            node.setScale(agent.length, agent.width, agent.height)
            body = self.style.palette[stable_id(agent.sumo_id) % len(self.style.palette)]
            for part in node.getChildren():
                color = body if part.getName() == "body" else _ROLE_COLORS[part.getName()]
                part.setColor(*color, 1)
        for label, pool in self._pool.items():
            for node in pool[used[label]:]:
                node.hide()


_VERTEX_SHADER = """
#version 120
uniform mat4 p3d_ModelViewProjectionMatrix;
uniform mat4 p3d_ModelViewMatrix;
uniform mat4 p3d_ModelMatrix;
attribute vec4 p3d_Vertex;
attribute vec3 p3d_Normal;
attribute vec4 p3d_Color;
varying vec3 world_normal;
varying float view_distance;
varying vec4 color;
void main() {
    gl_Position = p3d_ModelViewProjectionMatrix * p3d_Vertex;
    view_distance = length((p3d_ModelViewMatrix * p3d_Vertex).xyz);
    // Boxes are scaled along their face normals only, so this stays a face normal.
    world_normal = mat3(p3d_ModelMatrix) * p3d_Normal;
    color = p3d_Color;
}
"""

_FRAGMENT_SHADER = """
#version 120
uniform vec3 sun_dir;
uniform vec2 light;      // sun, ambient
uniform vec3 fog_color;
uniform vec2 fog_range;  // start, end (m)
varying vec3 world_normal;
varying float view_distance;
varying vec4 color;
void main() {
    float lambert = max(dot(normalize(world_normal), sun_dir), 0.0);
    vec3 lit = color.rgb * min(light.y + light.x * lambert, 1.2);
    float haze = clamp((view_distance - fog_range.x) / (fog_range.y - fog_range.x), 0.0, 1.0);
    gl_FragColor = vec4(mix(lit, fog_color, haze), 1.0);
}
"""

_CORE = None


def _panda():  # noqa: ANN202 - the panda3d.core module
    """Import Panda3D configured for headless EGL rendering (once per process)."""
    global _CORE
    if _CORE is None:
        # llvmpipe would otherwise start a thread per core in every worker process.
        os.environ.setdefault("LP_NUM_THREADS", "1")
        try:
            from panda3d.core import loadPrcFileData
        except ImportError as err:
            raise RenderError("panda3d is not installed: pip install panda3d==1.10.13") from err
        loadPrcFileData("qcraft_world_model", "\n".join([
            "load-display p3headlessgl", "window-type offscreen", "audio-library-name null",
            "sync-video false", "framebuffer-multisample 0", "notify-level error",
            "default-directnotify-level error"]))
        import panda3d.core as core

        _CORE = core
    return _CORE


_PIPE = None


def _pipe(core):  # noqa: ANN001, ANN202
    global _PIPE
    if _PIPE is None:
        pipe = core.GraphicsPipeSelection.getGlobalPtr().makeDefaultPipe()
        if pipe is None:
            raise RenderError("no offscreen OpenGL pipe: install Debian's libegl1 libegl-mesa0 "
                              "libgl1-mesa-dri (tools/install_system_deps.sh does)")
        _PIPE = pipe
    return _PIPE
