"""Offscreen camera rendering of a traffic scene with Panda3D (EGL, no display).

Static road geometry from ``scene_geometry``, agents as shaded part boxes (one shape per class,
or several bodies with wheels and lights per class: ``vehicle_shapes``), sky,
ground, a sun and fog, seen through the rig's pinhole cameras. Each scene gets
its own palette and lighting (``SceneStyle.random``) so a model cannot key on
one look. One renderer per process; rendering is deterministic for a given
scene, style and Mesa build.

``render_with_visibility`` also renders, per camera, which agent is seen at
each pixel (a second, flat-shaded pass), and ``agent_visibility`` turns that
into the fraction of each agent's unoccluded silhouette that is in view.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from qcraft_world_model.data.agent_shapes import ROLE_COLORS, Part, agent_parts, check_vehicle_shapes
from qcraft_world_model.data.agents import AgentState, Pose2D, stable_id
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


#: Clipping planes of every camera lens, m; the silhouettes of ``agent_silhouette`` are clipped the same way.
NEAR_M, FAR_M = 0.3, 400.0
#: Tag on an agent's holder node naming its id (index + 1) to the id cameras (``Camera.setTagState``).
_ID_TAG = "agent_id"


class SceneRenderer:
    """Renders the rig's cameras for one scene; reuse across frames, close at the end."""

    def __init__(self, geometry: SceneGeometry, cameras: Sequence[PinholeCamera],
                 style: SceneStyle | None = None, supersample: int = 2, vehicle_shapes: str = "fixed") -> None:
        check_vehicle_shapes(vehicle_shapes)  # at construction, not at the first agent drawn
        self.cameras = tuple(cameras)
        self.style = style or SceneStyle()
        self.supersample = supersample
        self.vehicle_shapes = vehicle_shapes
        core = _panda()
        self._core = core
        self._engine = core.GraphicsEngine.getGlobalPtr()
        self._pipe = _pipe(core)
        self._root = core.NodePath("scene")
        self._buffers = []
        self._textures = []
        self._camera_nodes = []
        # The id pass (``_add_id_pass``): per camera a second buffer of the same size, seen by a camera
        # at the same place through the same lens, that draws every node flat in its agent's id colour.
        self._id_buffers = []
        self._id_textures = []
        self._id_cameras = []
        self._id_tags = 0  # tag states registered on each id camera: ids 1.._id_tags
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
        #: Pooled agent nodes per shape (its part boxes), shown and placed anew each frame.
        self._pool: dict[tuple[Part, ...], list] = {}

    # -- public ------------------------------------------------------------------

    def render(self, ego: Pose2D, agents: Sequence[AgentState]) -> dict[str, np.ndarray]:
        """Images (H, W, 3) uint8 RGB per camera name, for the ego at ``ego`` among ``agents``."""
        self._pose(ego, agents)
        self._engine.renderFrame()
        return self._images()

    def render_with_visibility(self, ego: Pose2D, agents: Sequence[AgentState]
                               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The images of ``render`` (the same bytes) and, per camera name, which agent each pixel shows.

        The second map is (H * supersample, W * supersample) int32, at the resolution the scene is
        rasterised at before the images are shrunk: the index into ``agents`` of the agent seen at
        that pixel, -1 where the sky, the ground, a road or a roadside box is seen. Depth-tested
        against everything, so an agent behind a building or a bus is not there.
        """
        if not self._id_buffers:
            self._add_id_pass()
        for index, node in enumerate(self._pose(ego, agents)):
            node.setTag(_ID_TAG, str(index + 1))  # read by the id cameras only
        # Register an id camera state per agent index up to the most agents seen so far.
        for value in range(self._id_tags + 1, len(agents) + 1):
            state = self._core.RenderState.make(self._core.ShaderAttrib.make().setShaderInput(
                self._core.ShaderInput("agent_id", self._core.LVecBase4f(value, 0, 0, 0))))
            for id_camera in self._id_cameras:
                id_camera.node().setTagState(str(value), state)
        self._id_tags = max(self._id_tags, len(agents))
        for buffer in self._id_buffers:
            buffer.setActive(True)
        try:
            self._engine.renderFrame()
        finally:
            for buffer in self._id_buffers:
                buffer.setActive(False)
        ids = {}
        for camera, texture in zip(self.cameras, self._id_textures):
            raw = texture.getRamImageAs("RGB")
            if raw is None or len(raw) == 0:
                raise RenderError(f"camera {camera.name}: the id buffer returned no image")
            size = (camera.height * self.supersample, camera.width * self.supersample)
            rgb = np.frombuffer(raw, np.uint8).reshape(size + (3,))[::-1].astype(np.int32)
            ids[camera.name] = np.ascontiguousarray(rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16) - 1)
        return self._images(), ids

    def agent_visibility(self, ego: Pose2D, agents: Sequence[AgentState], ids: dict[str, np.ndarray],
                         which: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """How much of each agent the cameras see, from the id maps of ``render_with_visibility``.

        For the agents ``which`` (indices into ``agents``; all by default), in that order, per camera:
        ``visible_px`` (N, C) int32, the pixels showing the agent, counted in image pixels (the
        supersampled count / supersample², rounded half up), and ``visibility`` (N, C) float32 in [0, 1], the
        fraction of the agent's unoccluded silhouette (``agent_silhouette``: its own boxes projected,
        clipped to the image and the lens's near and far planes) that shows it, both at the
        supersampled resolution. 0 where the agent is out of view or behind the camera. An agent
        smaller than a pixel can have ``visible_px`` 0 and ``visibility`` above 0.
        """
        which = range(len(agents)) if which is None else which
        per_pixel = self.supersample ** 2
        visible_px = np.zeros((len(which), len(self.cameras)), np.int32)
        visibility = np.zeros((len(which), len(self.cameras)), np.float32)
        for c, camera in enumerate(self.cameras):
            seen = ids[camera.name]
            counts = np.bincount(seen.ravel() + 1, minlength=len(agents) + 1)[1:]
            for row, index in enumerate(which):
                visible_px[row, c] = (counts[index] + per_pixel // 2) // per_pixel
                if counts[index] == 0:
                    continue
                silhouette = agent_silhouette(camera, ego, agents[index], self.supersample, self.vehicle_shapes)
                if silhouette is None:
                    continue
                (r0, c0), mask = silhouette
                window = seen[r0: r0 + mask.shape[0], c0: c0 + mask.shape[1]]
                # Only pixels inside the silhouette count, so a half-pixel disagreement at the edge
                # between the GPU's rasteriser and this one cannot push the fraction over 1.
                visibility[row, c] = np.count_nonzero(window[mask] == index) / np.count_nonzero(mask)
        return visible_px, visibility

    def close(self) -> None:
        """Release the offscreen buffers (the GL context stays for the next renderer)."""
        for buffer in self._buffers + self._id_buffers:
            self._engine.removeWindow(buffer)
        self._buffers.clear()
        self._id_buffers.clear()
        self._root.removeNode()

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pose(self, ego: Pose2D, agents: Sequence[AgentState]) -> list:
        """Move the ego (and its cameras and ground) and the agents into place for the next frame;
        the agents' holder nodes, in the order of ``agents``."""
        self._ego_node.setPos(ego.x, ego.y, 0.0)
        self._ego_node.setH(math.degrees(ego.heading))
        self._ground.setPos(ego.x, ego.y, 0)
        return self._place_agents(agents)

    def _images(self) -> dict[str, np.ndarray]:
        """The RGB buffers of the last frame, shrunk to the cameras' image size."""
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

    # -- set-up ------------------------------------------------------------------

    def _add_camera(self, camera: PinholeCamera) -> None:
        core = self._core
        buffer, texture = self._offscreen(f"cam-{camera.name}", camera, (*self.style.sky, 1))
        self._buffers.append(buffer)
        lens = core.PerspectiveLens()
        lens.setFov(camera.hfov_deg, camera.vfov_deg)
        lens.setNearFar(NEAR_M, FAR_M)
        node = core.Camera(f"camera-{camera.name}", lens)
        node_path = self._ego_node.attachNewNode(node)
        node_path.setPos(camera.x, camera.y, camera.z)
        # Panda cameras look along +Y: heading -90 deg turns that onto the ego's +x.
        node_path.setHpr(camera.yaw_deg - 90.0, -camera.pitch_down_deg, 0.0)
        region = buffer.makeDisplayRegion()
        region.setCamera(node_path)
        self._textures.append(texture)
        self._camera_nodes.append(node_path)

    def _add_id_pass(self) -> None:
        """Give every camera its id camera: same place, same lens, its own buffer.

        Made on the first ``render_with_visibility``, not with the renderer, and drawn in the RGB
        buffer's GL context: with extra buffers (own contexts, or made at start-up) the odd pixel of
        a later RGB frame came out one level different (1 in ~10^7 supersampled pixels), probably
        because Panda breaks draw-order ties between same-state surfaces by memory address, which
        decides coplanar road triangles. So a renderer that only ``render``s draws exactly as before.

        The id shader is set on each id camera's initial state with a higher priority than the scene's
        shader, so it wins everywhere; an agent's id reaches it as a tag state on the agent's holder
        node, which only id cameras read, so the scene's own render state is untouched. Black clear: id
        0, nothing.
        """
        core = self._core
        shader = core.Shader.make(core.Shader.SL_GLSL, vertex=_ID_VERTEX_SHADER, fragment=_ID_FRAGMENT_SHADER)
        initial = core.RenderState.make(core.ShaderAttrib.make(shader, 1000).setShaderInput(
            core.ShaderInput("agent_id", core.LVecBase4f(0))))
        for camera, buffer, node_path in zip(self.cameras, self._buffers, self._camera_nodes):
            id_buffer, id_texture = self._offscreen(f"ids-{camera.name}", camera, (0, 0, 0, 1), buffer.getGsg())
            self._id_buffers.append(id_buffer)
            id_node = core.Camera(f"ids-{camera.name}", node_path.node().getLens())
            id_node.setInitialState(initial)
            id_node.setTagStateKey(_ID_TAG)
            id_path = node_path.attachNewNode(id_node)
            id_buffer.makeDisplayRegion().setCamera(id_path)
            id_buffer.setActive(False)  # drawn only in render_with_visibility
            self._id_textures.append(id_texture)
            self._id_cameras.append(id_path)

    def _offscreen(self, name: str, camera: PinholeCamera, clear: tuple[float, float, float, float],
                   gsg=None):  # noqa: ANN001, ANN202 - panda3d GraphicsStateGuardian, GraphicsOutput
        """An 8-bit RGB offscreen buffer with depth at the camera's supersampled size, copied to RAM;
        in the graphics context ``gsg``, or a new one."""
        core = self._core
        fb = core.FrameBufferProperties()
        fb.setRgbColor(True)
        fb.setRgbaBits(8, 8, 8, 0)
        fb.setDepthBits(24)
        size = core.WindowProperties.size(camera.width * self.supersample, camera.height * self.supersample)
        buffer = self._engine.makeOutput(self._pipe, name, -1, fb, size, core.GraphicsPipe.BFRefuseWindow,
                                         gsg, None)
        if buffer is None:
            raise RenderError(f"could not create an offscreen buffer for camera {camera.name}")
        texture = core.Texture()
        buffer.addRenderTexture(texture, core.GraphicsOutput.RTMCopyRam)
        buffer.setClearColor(clear)
        return buffer, texture

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

    def _agent_node(self, shape: tuple[Part, ...], index: int):  # noqa: ANN202
        pool = self._pool.setdefault(shape, [])
        while len(pool) <= index:
            holder = self._root.attachNewNode(f"agent-{len(self._pool)}-{len(pool)}")
            for x0, x1, half, z0, z1, role in shape:
                part = self._unit_parts["box"].copyTo(holder)
                part.setName(role)
                part.setPos((x0 + x1) / 2, 0, z0)
                part.setScale(x1 - x0, 2 * half, z1 - z0)
            pool.append(holder)
        return pool[index]

    def _place_agents(self, agents: Sequence[AgentState]) -> list:
        """Show, place and paint a pooled node per agent, hide the rest; the nodes, in agent order."""
        used: dict[tuple[Part, ...], int] = {}
        nodes = []
        for agent in agents:
            shape = agent_parts(agent, self.vehicle_shapes)
            node = self._agent_node(shape, used.get(shape, 0))
            used[shape] = used.get(shape, 0) + 1
            nodes.append(node)
            node.show()
            node.setPos(agent.x, agent.y, agent.z)
            node.setH(math.degrees(agent.heading))
            node.setScale(agent.length, agent.width, agent.height)
            body = self.style.palette[stable_id(agent.sumo_id) % len(self.style.palette)]
            for part in node.getChildren():
                color = body if part.getName() == "body" else ROLE_COLORS[part.getName()]
                part.setColor(*color, 1)
        for shape, pool in self._pool.items():
            for node in pool[used.get(shape, 0):]:
                node.hide()
        return nodes


def agent_silhouette(camera: PinholeCamera, ego: Pose2D, agent: AgentState, supersample: int = 1,
                     vehicle_shapes: str = "fixed") -> tuple[tuple[int, int], np.ndarray] | None:
    """The pixels ``agent`` would cover in ``camera``'s image if nothing stood in front of it.

    Rasterised the way the GPU draws the agent in ``SceneRenderer``: the faces of its part boxes
    (``agent_parts``, drawn with ``vehicle_shapes``) that face the camera (the others are culled), each
    clipped to the lens's near and far planes and projected; a pixel is covered when its centre lies inside one, as in OpenGL. So a
    box cut by the near plane covers what its remaining faces cover, not a solid cap. At the image
    size times ``supersample``, the resolution of ``render_with_visibility``'s id maps. Returns
    ((row, column) of the mask's top-left pixel, (h, w) bool mask), or None where the agent covers
    no pixel (out of view, behind the camera).
    """
    width, height = camera.width * supersample, camera.height * supersample
    c, s = math.cos(agent.heading), math.sin(agent.heading)
    k = np.arange(8)
    polygons = []
    for x0, x1, half, z0, z1, _ in agent_parts(agent, vehicle_shapes):
        # Corner k takes x, y, z from bits 0, 1, 2 of k.
        local = np.stack([np.where(k & 1, x1, x0) * agent.length, np.where(k & 2, half, -half) * agent.width,
                          np.where(k & 4, z1, z0) * agent.height + agent.z], axis=1)
        world = np.stack([agent.x + c * local[:, 0] - s * local[:, 1], agent.y + s * local[:, 0] + c * local[:, 1]],
                         axis=1)
        corners = camera.ego_to_optical(np.concatenate([ego.to_local(world), local[:, 2:]], axis=1))
        if ((corners[:, 2] > NEAR_M) & (corners[:, 2] < FAR_M)).all():
            # Wholly between the planes (the common case): the faces towards the camera cover the
            # projected box, the convex hull of its projected corners; one polygon instead of three.
            projected = np.stack([camera.fx * corners[:, 0] / corners[:, 2] + camera.cx,
                                  camera.fy * corners[:, 1] / corners[:, 2] + camera.cy], axis=1) * supersample
            polygons.append(cv2.convexHull(projected.astype(np.float32))[:, 0].astype(np.float64))
            continue
        centre = corners.mean(axis=0)
        for face in _BOX_FACES:
            quad = corners[face]
            # Front-facing: the outward normal (face centre minus box centre, for a box) points at the
            # camera, which sits at the optical origin.
            middle = quad.mean(axis=0)
            if np.dot(middle - centre, middle) >= 0:
                continue
            for plane, keep in ((NEAR_M, 1.0), (FAR_M, -1.0)):
                quad = _clip_polygon(quad, plane, keep)
            if len(quad) >= 3:
                polygons.append(np.stack([camera.fx * quad[:, 0] / quad[:, 2] + camera.cx,
                                          camera.fy * quad[:, 1] / quad[:, 2] + camera.cy], axis=1) * supersample)
    if not polygons:
        return None
    # Pixel j is covered when its centre j + 0.5 is: the pixels whose centres lie within the polygons' box.
    spans = [(polygon, span) for polygon in polygons if (span := _pixel_span(polygon, width, height)) is not None]
    if not spans:
        return None
    row0, col0 = min(span[0] for _, span in spans), min(span[1] for _, span in spans)
    row1, col1 = max(span[2] for _, span in spans), max(span[3] for _, span in spans)
    mask = np.zeros((row1 - row0 + 1, col1 - col0 + 1), bool)
    for polygon, (r0, c0, r1, c1) in spans:
        u = np.arange(c0, c1 + 1) + 0.5
        v = (np.arange(r0, r1 + 1) + 0.5)[:, None]
        following = polygon[np.r_[1:len(polygon), 0]]
        # Inside a convex polygon: on the same side of every edge as its winding (signed area) says.
        edge = (following - polygon) * np.sign(np.sum(polygon[:, 0] * following[:, 1] - following[:, 0] * polygon[:, 1]))
        inside = np.ones((len(v), len(u)), bool)
        for (px, py), (ex, ey) in zip(polygon.tolist(), edge.tolist()):
            inside &= ex * (v - py) >= ey * (u - px)
        mask[r0 - row0: r1 - row0 + 1, c0 - col0: c1 - col0 + 1] |= inside
    return ((row0, col0), mask) if mask.any() else None


def _clip_polygon(polygon: np.ndarray, depth: float, keep: float) -> np.ndarray:
    """The part of a convex (N, 3) optical-frame polygon with keep * (z - depth) >= 0 (Sutherland-Hodgman)."""
    if len(polygon) == 0:
        return polygon
    side = keep * (polygon[:, 2] - depth)
    if (side >= 0).all():
        return polygon
    out = []
    for i in range(len(polygon)):
        j = (i + 1) % len(polygon)
        if side[i] >= 0:
            out.append(polygon[i])
        if (side[i] >= 0) != (side[j] >= 0):
            t = side[i] / (side[i] - side[j])
            out.append(polygon[i] + t * (polygon[j] - polygon[i]))
    return np.array(out).reshape(-1, 3)


def _pixel_span(polygon: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """(row0, col0, row1, col1), inclusive, of the in-image pixels whose centres lie in the polygon's bounds."""
    col0, row0 = np.maximum(np.ceil(polygon.min(axis=0) - 0.5), 0)
    col1, row1 = np.minimum(np.floor(polygon.max(axis=0) - 0.5), (width - 1, height - 1))
    if col1 < col0 or row1 < row0:
        return None
    return int(row0), int(col0), int(row1), int(col1)


#: The 6 faces of a box whose corner k has x, y, z from bits 0, 1, 2 of k, corners in cyclic order.
_BOX_FACES = np.array([(0, 2, 6, 4), (1, 3, 7, 5), (0, 1, 5, 4), (2, 3, 7, 6), (0, 1, 3, 2), (4, 5, 7, 6)])

#: The id pass: position only, flat colour = id (agent index + 1; 0 for static geometry) in 24 bits,
#: no light, no fog, so every pixel decodes exactly.
_ID_VERTEX_SHADER = """
#version 120
uniform mat4 p3d_ModelViewProjectionMatrix;
attribute vec4 p3d_Vertex;
void main() {
    gl_Position = p3d_ModelViewProjectionMatrix * p3d_Vertex;
}
"""

_ID_FRAGMENT_SHADER = """
#version 120
uniform float agent_id;
void main() {
    // Integers below 2^24 are exact in a float; k / 255 lands exactly on byte k.
    float high = floor(agent_id / 65536.0);
    float mid = floor((agent_id - high * 65536.0) / 256.0);
    float low = agent_id - high * 65536.0 - mid * 256.0;
    gl_FragColor = vec4(low, mid, high, 255.0) / 255.0;
}
"""

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
