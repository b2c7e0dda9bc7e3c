"""One simulated drive: SUMO traffic around an ego, rendered by its cameras, cut into clips.

An episode is a (map, seed) pair. Everything random in it — the demand,
the roadside buildings, the scene's look, the camera mount, which vehicles
become the ego — derives from that seed, so an episode is reproducible.
Snapshots are buffered and frames rendered only for clips that are kept.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from qcraft_world_model.data.agents import AgentState, Pose2D
from qcraft_world_model.data.camera_rig import PinholeCamera, get_rig, with_mount_jitter
from qcraft_world_model.data.renderer import SceneRenderer, SceneStyle
from qcraft_world_model.data.scene_geometry import SceneGeometry, build_scene_geometry
from qcraft_world_model.data.sumo_maps import ScenarioFiles, prepare_scenario
from qcraft_world_model.data.traffic_sim import TrafficSimulation, TrafficSnapshot

#: Per-agent state features stored per time step, in the clip's reference (t0 ego) frame.
AGENT_FEATURES = ("x", "y", "heading", "vx", "vy")


@dataclass(frozen=True)
class EpisodeConfig:
    """How one episode is simulated, rendered and cut into clips."""

    map: str
    seed: int
    clips: int
    rig: str = "front"
    #: Frame width, px; and the height unless ``image_height`` is given (real cameras are wider than tall).
    image_size: int = 128
    image_height: int | None = None
    rate_hz: float = 10.0
    #: Frames the model sees (the newest is t0) and future frames kept as targets.
    past_frames: int = 16
    future_frames: int = 10
    #: Future agent states kept as trajectory targets (30 = 3 s at 10 Hz).
    future_steps: int = 30
    #: Steps between the t0 of consecutive clips of one ego.
    clip_stride: int = 20
    warmup_s: float = 120.0
    #: Agents within this distance of the ego at t0 are the clip's agents.
    agent_radius_m: float = 50.0
    #: Width of the clip's agent arrays. Large enough that no agent within ``agent_radius_m`` is left
    #: out in the densest scene of these maps; any that still are get counted in ``meta["agents_dropped"]``.
    max_agents: int = 128
    #: Camera mount variation (camera_rig.MOUNTS): ``wide`` for training, ``standard`` for evaluation.
    mount: str = "standard"
    #: How vehicles are drawn (agent_shapes.VEHICLE_SHAPES): ``fixed``, one shape per class (every dataset
    #: before session 12), or ``varied``, several bodies per class with wheels and lights.
    vehicle_shapes: str = "fixed"
    #: Clips whose ego travels less than this are mostly dropped (queues at red lights).
    min_ego_travel_m: float = 3.0
    keep_stationary: float = 0.2
    #: Give up after this much simulated time (a map where no ego can be found).
    max_sim_s: float = 1800.0

    @property
    def window_steps(self) -> int:
        return self.past_frames + self.future_steps

    @property
    def frame_steps(self) -> int:
        return self.past_frames + self.future_frames


@dataclass
class Clip:
    """One training/evaluation example (arrays in the t0 ego frame unless noted)."""

    #: (T, C, H, W, 3) uint8, T = past + future frames, C cameras in rig order.
    frames: np.ndarray
    #: (S, 5) float32 ego x, y, heading, vx, vy for S = past + future steps.
    ego: np.ndarray
    #: (S, A, 5) float32 agent states, zero where not valid.
    agents: np.ndarray
    #: (S, A) bool: the agent was present (and within simulation range) at that step.
    agent_valid: np.ndarray
    #: (A, 3) float32 length, width, height.
    agent_size: np.ndarray
    #: (A,) uint8 Autoware label; (A,) int64 stable id.
    agent_label: np.ndarray
    agent_id: np.ndarray
    #: (A, C) bool: the agent's box centre projects inside camera c's image at t0.
    agent_in_view: np.ndarray
    #: (A, C) int32: pixels of camera c's t0 image that show the agent (from the renderer's id pass,
    #: depth-tested against buildings, trees and other agents), in image pixels; 0 for empty slots.
    agent_visible_px: np.ndarray
    #: (A, C) float32 in [0, 1]: the fraction of the agent's unoccluded silhouette (its boxes projected,
    #: clipped to the image) that is seen at t0; 0 when out of view or fully hidden, and for empty slots.
    agent_visibility: np.ndarray
    #: t0 ego pose in the map frame (x, y, heading), float64.
    ego_pose_map: np.ndarray
    #: Simulation time at t0, s.
    time_s: float
    meta: dict = field(default_factory=dict)


class _History:
    """The recent snapshots of the current ego, keyed by step, with lazily rendered frames."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.snapshots: OrderedDict[int, TrafficSnapshot] = OrderedDict()
        self.frames: dict[int, dict[str, np.ndarray]] = {}
        #: Per-pixel agent ids (``SceneRenderer.render_with_visibility``), rendered only for clips' t0 steps.
        self.ids: dict[int, dict[str, np.ndarray]] = {}

    def add(self, step: int, snapshot: TrafficSnapshot) -> None:
        self.snapshots[step] = snapshot
        while len(self.snapshots) > self.keep:
            old, _ = self.snapshots.popitem(last=False)
            self.frames.pop(old, None)
            self.ids.pop(old, None)

    def clear(self) -> None:
        self.snapshots.clear()
        self.frames.clear()
        self.ids.clear()


@dataclass
class SceneSetup:
    """Everything a (map, seed) fixes before the first step: files, cameras, look, geometry, and the
    random generator that goes on to choose the egos."""

    rng: np.random.Generator
    files: ScenarioFiles
    cameras: tuple[PinholeCamera, ...]
    style: SceneStyle
    geometry: SceneGeometry


def set_up_scene(map_name: str, seed: int, rig: str, image_size: int, mount: str = "standard",
                 image_height: int | None = None) -> SceneSetup:
    """Prepare a scene; the order of random draws is part of reproducibility, so it lives here once.

    Frames are ``image_size`` wide and ``image_height`` (default: as wide) tall, at the rig's
    horizontal field of view: a wider-than-tall frame keeps the lens and doubles the pixels per metre.
    """
    rng = np.random.default_rng(seed)
    files = prepare_scenario(map_name, seed)
    cameras = with_mount_jitter(get_rig(rig, image_size, image_height or image_size), rng, mount)
    style = SceneStyle.random(rng)
    return SceneSetup(rng, files, cameras, style, build_scene_geometry(files.net, seed=seed))


def run_episode(config: EpisodeConfig) -> Iterator[Clip]:
    """Simulate, render and yield up to ``config.clips`` clips."""
    scene = set_up_scene(config.map, config.seed, config.rig, config.image_size, config.mount,
                         config.image_height)
    rng, files, cameras, style, geometry = scene.rng, scene.files, scene.cameras, scene.style, scene.geometry
    step_s = 1.0 / config.rate_hz
    made = 0
    used_egos: set[str] = set()
    with SceneRenderer(geometry, cameras, style, vehicle_shapes=config.vehicle_shapes) as renderer, \
            TrafficSimulation(files, step_length=step_s, radius=max(120.0, 2 * config.agent_radius_m)) as sim:
        sim.advance(config.warmup_s)
        history = _History(keep=config.window_steps)
        step = 0
        next_t0: int | None = None
        while made < config.clips and sim.time - files.map.begin < config.max_sim_s:
            if sim.ego_id is None:
                if sim.choose_ego(rng, files.map.min_ego_route_m, frozenset(used_egos)) is None:
                    sim.advance(1.0)
                    continue
                used_egos.add(sim.ego_id)
                history.clear()
                step, next_t0 = 0, config.past_frames - 1
            snapshot = sim.step()
            if snapshot is None or _teleported(history, step, snapshot, step_s):
                sim.ego_id = None  # the ego arrived or jumped: find another
                continue
            history.add(step, snapshot)
            window_start = step - config.window_steps + 1
            t0 = window_start + config.past_frames - 1
            if window_start >= 0 and t0 >= next_t0:
                next_t0 = t0 + config.clip_stride
                if _worth_keeping(history, window_start, step, config, rng):
                    clip = _make_clip(history, window_start, config, cameras, renderer, files)
                    clip.meta.update(cameras=[c.to_dict() for c in cameras], style=asdict(style))
                    yield clip
                    made += 1
            step += 1


def _teleported(history: _History, step: int, snapshot: TrafficSnapshot, step_s: float) -> bool:
    """SUMO teleports stuck vehicles; a jump would poison the ego's trajectory."""
    previous = history.snapshots.get(step - 1)
    if previous is None:
        return False
    jump = math.hypot(snapshot.ego.x - previous.ego.x, snapshot.ego.y - previous.ego.y)
    return jump > max(previous.ego.speed, snapshot.ego.speed) * step_s * 2 + 2.0


def _worth_keeping(history: _History, start: int, end: int, config: EpisodeConfig,
                   rng: np.random.Generator) -> bool:
    first, last = history.snapshots[start].ego, history.snapshots[end].ego
    travel = math.hypot(last.x - first.x, last.y - first.y)
    return travel >= config.min_ego_travel_m or rng.random() < config.keep_stationary


def _make_clip(history: _History, start: int, config: EpisodeConfig, cameras: tuple[PinholeCamera, ...],
               renderer: SceneRenderer, files: ScenarioFiles) -> Clip:
    t0 = start + config.past_frames - 1
    reference = history.snapshots[t0]
    ego0 = reference.ego
    pose = Pose2D(ego0.x, ego0.y, ego0.heading)

    # The clip's agents: those near the ego at t0, nearest first.
    within = sorted((a for a in reference.agents if math.hypot(a.x - ego0.x, a.y - ego0.y) <= config.agent_radius_m),
                    key=lambda a: math.hypot(a.x - ego0.x, a.y - ego0.y))
    near = within[: config.max_agents]
    index = {agent.sumo_id: i for i, agent in enumerate(near)}
    steps = config.window_steps
    agents = np.zeros((steps, config.max_agents, len(AGENT_FEATURES)), np.float32)
    valid = np.zeros((steps, config.max_agents), bool)
    ego = np.zeros((steps, len(AGENT_FEATURES)), np.float32)
    for s in range(steps):
        snapshot = history.snapshots[start + s]
        ego[s] = _local_state(pose, snapshot.ego)
        for agent in snapshot.agents:
            slot = index.get(agent.sumo_id)
            if slot is not None:
                agents[s, slot] = _local_state(pose, agent)
                valid[s, slot] = True

    size = np.zeros((config.max_agents, 3), np.float32)
    label = np.zeros(config.max_agents, np.uint8)
    ids = np.zeros(config.max_agents, np.int64)
    in_view = np.zeros((config.max_agents, len(cameras)), bool)
    for slot, agent in enumerate(near):
        size[slot] = (agent.length, agent.width, agent.height)
        label[slot] = int(agent.label)
        ids[slot] = agent.id
        centre = np.array([[*agents[config.past_frames - 1, slot, :2], agent.height / 2]])
        for c, camera in enumerate(cameras):
            pixel, depth = camera.project(centre)
            in_view[slot, c] = bool(depth[0] > 0.5 and 0 <= pixel[0, 0] < camera.width
                                    and 0 <= pixel[0, 1] < camera.height)

    # The t0 frame is rendered with its id pass, in its place among the others: what the renderer drew
    # before can change a few pixels of a frame (seen in a multi-camera renderer's early frames), so
    # frames are rendered in the same order as without the id pass and the RGB stays the same bytes.
    frames = np.stack([_frames_at(history, start + s, renderer, cameras, with_ids=start + s == t0)
                       for s in range(config.frame_steps)])

    # How much of each agent the t0 images show.
    seen = history.ids[t0]
    rendered = {agent.sumo_id: i for i, agent in enumerate(reference.agents)}
    visible_px = np.zeros((config.max_agents, len(cameras)), np.int32)
    visibility = np.zeros((config.max_agents, len(cameras)), np.float32)
    if near:
        visible_px[: len(near)], visibility[: len(near)] = renderer.agent_visibility(
            _pose_of(reference), reference.agents, seen, [rendered[agent.sumo_id] for agent in near])
    return Clip(frames=frames, ego=ego, agents=agents, agent_valid=valid, agent_size=size, agent_label=label,
                agent_id=ids, agent_in_view=in_view, agent_visible_px=visible_px, agent_visibility=visibility,
                ego_pose_map=np.array([ego0.x, ego0.y, ego0.heading]),
                time_s=reference.time, meta={"map": files.map.name, "seed": files.seed, "ego": ego0.sumo_id,
                                             "agents_dropped": len(within) - len(near)})


def _frames_at(history: _History, step: int, renderer: SceneRenderer, cameras: tuple[PinholeCamera, ...],
               with_ids: bool = False) -> np.ndarray:
    """(C, H, W, 3) images at ``step``, rendered once and shared by overlapping clips.

    ``with_ids``: also have ``history.ids[step]``, the renderer's per-pixel agent ids (index into the
    snapshot's agents, ``SceneRenderer.render_with_visibility``). A frame cached without them (a clip
    overlapping an earlier one) is rendered again for them and keeps its cached images.
    """
    snapshot = history.snapshots[step]
    if with_ids and step not in history.ids:
        images, history.ids[step] = renderer.render_with_visibility(_pose_of(snapshot), snapshot.agents)
        history.frames.setdefault(step, images)
    if step not in history.frames:
        history.frames[step] = renderer.render(_pose_of(snapshot), snapshot.agents)
    images = history.frames[step]
    return np.stack([images[camera.name] for camera in cameras])


def _pose_of(snapshot: TrafficSnapshot) -> Pose2D:
    """The ego's pose in a snapshot, as the renderer takes it."""
    return Pose2D(snapshot.ego.x, snapshot.ego.y, snapshot.ego.heading)


def _local_state(pose: Pose2D, agent: AgentState) -> np.ndarray:
    xy = pose.to_local(np.array([agent.x, agent.y]))
    heading = float(pose.heading_to_local(agent.heading))
    return np.array([xy[0], xy[1], heading, agent.speed * math.cos(heading), agent.speed * math.sin(heading)],
                    np.float32)
