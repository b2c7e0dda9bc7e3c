"""Run a SUMO scenario with libsumo and read the traffic around an ego vehicle.

libsumo runs one simulation per process (parallelise with processes). The
ego is an ordinary vehicle of the scenario's own demand, so it drives a real
route through real traffic; snapshots give every agent near it as box
centres with mathematical headings (see ``agents.py`` for SUMO's units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from qcraft_world_model.data.agents import (
    AgentLabel,
    AgentState,
    center_from_front_bumper,
    heading_from_sumo_angle,
    label_of_vclass,
)
from qcraft_world_model.data.sumo_maps import ScenarioFiles


class SimulationError(RuntimeError):
    """SUMO failed (could not start, or died mid-run); the message names map, seed and time."""


@dataclass(frozen=True)
class TrafficSnapshot:
    """The ego and every agent within range at one simulation time."""

    time: float
    ego: AgentState
    agents: tuple[AgentState, ...]


@dataclass(frozen=True)
class _Static:
    """Per-agent attributes that do not change, fetched once."""

    label: AgentLabel
    length: float
    width: float
    height: float


class TrafficSimulation:
    """One libsumo simulation (a context manager: started on enter, closed on exit)."""

    def __init__(self, files: ScenarioFiles, step_length: float = 0.1, radius: float = 80.0) -> None:
        self.files = files
        self.step_length = step_length
        self.radius = radius
        self.ego_id: str | None = None
        self._static: dict[str, _Static] = {}
        self._libsumo = None

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> TrafficSimulation:
        import libsumo  # one simulation per process: imported where it is used

        self._libsumo = libsumo
        try:
            libsumo.start(["sumo", *self.files.sumo_args(self.step_length)])
        except Exception as err:  # libsumo raises its own exception types
            raise self._error("could not start", err) from err
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._libsumo.close()
        except Exception:  # already dead: closing is best effort
            pass

    @property
    def time(self) -> float:
        return float(self._call(lambda s: s.simulation.getTime()))

    def advance(self, seconds: float) -> None:
        """Run the simulation forward (warm-up: let traffic fill the network)."""
        for _ in range(round(seconds / self.step_length)):
            self._call(lambda s: s.simulationStep())

    # -- ego -------------------------------------------------------------------

    def choose_ego(self, rng: np.random.Generator, min_route_m: float = 300.0,
                   exclude: frozenset[str] = frozenset()) -> str | None:
        """Pick a moving car with at least ``min_route_m`` of route ahead (None: none yet)."""

        def moving_cars(sumo) -> list[str]:  # noqa: ANN001
            return [vid for vid in sorted(sumo.vehicle.getIDList())
                    if vid not in exclude and self._static_of(vid, vehicle=True).label == AgentLabel.CAR
                    and sumo.vehicle.getSpeed(vid) >= 1.0 and self._remaining_route_m(vid) >= min_route_m]

        candidates = self._call(moving_cars)
        if not candidates:
            return None
        self.ego_id = str(rng.choice(candidates))
        return self.ego_id

    def _remaining_route_m(self, vid: str) -> float:
        sumo = self._libsumo
        route = sumo.vehicle.getRoute(vid)
        index = sumo.vehicle.getRouteIndex(vid)
        if index < 0:
            return 0.0
        ahead = sum(sumo.lane.getLength(f"{edge}_0") for edge in route[index + 1:])
        return ahead + sumo.lane.getLength(sumo.vehicle.getLaneID(vid)) - sumo.vehicle.getLanePosition(vid)

    # -- snapshots -------------------------------------------------------------

    def step(self) -> TrafficSnapshot | None:
        """Advance one step and read the scene; None once the ego has left the simulation."""
        self._call(lambda s: s.simulationStep())
        return self.snapshot()

    def snapshot(self) -> TrafficSnapshot | None:
        """The scene around the ego now (None when there is no ego in the simulation)."""
        if self.ego_id is None or self.ego_id not in self._call(lambda s: s.vehicle.getIDList()):
            return None
        ego = self._vehicle_state(self.ego_id)
        agents = []
        for vid in self._call(lambda s: s.vehicle.getIDList()):
            if vid != self.ego_id:
                state = self._near(self._vehicle_state(vid), ego)
                if state is not None:
                    agents.append(state)
        for pid in self._call(lambda s: s.person.getIDList()):
            state = self._near(self._person_state(pid), ego)
            if state is not None:
                agents.append(state)
        agents.sort(key=lambda a: a.sumo_id)
        return TrafficSnapshot(self.time, ego, tuple(agents))

    def _near(self, state: AgentState, ego: AgentState) -> AgentState | None:
        return state if math.hypot(state.x - ego.x, state.y - ego.y) <= self.radius else None

    def _static_of(self, agent_id: str, vehicle: bool) -> _Static:
        static = self._static.get(agent_id)
        if static is None:
            sumo = self._libsumo
            if vehicle:
                static = _Static(label_of_vclass(sumo.vehicle.getVehicleClass(agent_id)),
                                 sumo.vehicle.getLength(agent_id), sumo.vehicle.getWidth(agent_id),
                                 sumo.vehicle.getHeight(agent_id))
            else:
                vtype = sumo.person.getTypeID(agent_id)
                static = _Static(AgentLabel.PEDESTRIAN, max(0.3, sumo.person.getLength(agent_id)),
                                 max(0.4, sumo.person.getWidth(agent_id)), sumo.vehicletype.getHeight(vtype))
            self._static[agent_id] = static
        return static

    def _vehicle_state(self, vid: str) -> AgentState:
        sumo = self._libsumo
        static = self._static_of(vid, vehicle=True)
        x, y = sumo.vehicle.getPosition(vid)
        heading = heading_from_sumo_angle(sumo.vehicle.getAngle(vid))
        cx, cy = center_from_front_bumper(x, y, heading, static.length)
        return AgentState(vid, static.label, cx, cy, 0.0, heading, sumo.vehicle.getSpeed(vid),
                          static.length, static.width, static.height)

    def _person_state(self, pid: str) -> AgentState:
        sumo = self._libsumo
        static = self._static_of(pid, vehicle=False)
        x, y = sumo.person.getPosition(pid)  # a pedestrian is tiny: its reference point is its centre
        heading = heading_from_sumo_angle(sumo.person.getAngle(pid))
        return AgentState(f"person:{pid}", static.label, x, y, 0.0, heading, sumo.person.getSpeed(pid),
                          static.length, static.width, static.height)

    # -- errors ----------------------------------------------------------------

    def _call(self, fn):  # noqa: ANN001, ANN202 - a thin guard around libsumo calls
        try:
            return fn(self._libsumo)
        except Exception as err:
            raise self._error("failed", err) from err

    def _error(self, what: str, err: Exception) -> SimulationError:
        return SimulationError(f"SUMO {what} on map {self.files.map.name!r} seed {self.files.seed}: "
                               f"{type(err).__name__}: {err}")
