"""What each agent is drawn as: part boxes per class, one look (``fixed``) or several (``varied``).

The renderer (``renderer.py``) draws these parts and rasterises the same parts for each agent's
unoccluded silhouette, so what is drawn and what visibility is measured against cannot disagree.
"""

from __future__ import annotations

from qcraft_world_model.data.agents import AgentLabel, AgentState, stable_id

#: One part box of an agent: (x0, x1, y half-width fraction, z0, z1, colour role), in units of the
#: agent's length, width and height. Roles: body (palette), glass, dark, skin, and the lights.
Part = tuple[float, float, float, float, float, str]

#: Boxes making up each agent class (``vehicle_shapes="fixed"``, the look every dataset before
#: session 12 was rendered with: one shape per class, no wheels).
_SHAPES: dict[AgentLabel, tuple[Part, ...]] = {
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


def _wheels(front: float, rear: float, size: float, depth: float) -> tuple[Part, ...]:
    """Two dark axle blocks (a wheel pair each, seen from the side as two wheels) reaching the ground."""
    return ((rear - size / 2, rear + size / 2, 0.5, 0.0, depth, "dark"),
            (front - size / 2, front + size / 2, 0.5, 0.0, depth, "dark"))


def _lights(low: float, high: float) -> tuple[Part, ...]:
    """A tail-light bar and a head-light bar, standing a hair proud of the body so they never z-fight."""
    return ((-0.505, -0.49, 0.42, low, high, "tail_light"), (0.49, 0.505, 0.42, low, high, "head_light"))


#: ``vehicle_shapes="varied"``: several bodies per vehicle class, with wheels under a raised body and
#: light bars, chosen per agent by its id. Another renderer's (or the road's) cars are sedans, hatchbacks,
#: vans and pick-ups, with a dark gap and wheels under them; a detector that has only seen one
#: two-box car floating on its shadowless base has learnt that car, not cars.
_VARIED_SHAPES: dict[AgentLabel, tuple[tuple[Part, ...], ...]] = {
    AgentLabel.CAR: (
        # sedan: low body, cabin in the middle, boot behind it
        ((-0.5, 0.5, 0.5, 0.2, 0.56, "body"), (-0.27, 0.2, 0.44, 0.56, 1.0, "glass"),
         *_wheels(0.32, -0.32, 0.16, 0.3), *_lights(0.42, 0.5)),
        # hatchback / estate: the cabin runs to the tail
        ((-0.5, 0.5, 0.5, 0.2, 0.58, "body"), (-0.47, 0.18, 0.45, 0.58, 1.0, "glass"),
         *_wheels(0.33, -0.33, 0.17, 0.3), *_lights(0.44, 0.52)),
        # SUV: tall body, body-coloured roof over a window band
        ((-0.5, 0.5, 0.5, 0.22, 0.62, "body"), (-0.46, 0.22, 0.47, 0.62, 0.9, "glass"),
         (-0.47, 0.2, 0.47, 0.9, 1.0, "body"), *_wheels(0.33, -0.33, 0.18, 0.33), *_lights(0.48, 0.56)),
        # van: one tall box, windscreen and a side window band
        ((-0.5, 0.5, 0.5, 0.16, 1.0, "body"), (0.3, 0.505, 0.46, 0.55, 0.93, "glass"),
         (-0.4, 0.3, 0.505, 0.6, 0.88, "glass"), *_wheels(0.34, -0.34, 0.15, 0.26), *_lights(0.35, 0.45)),
        # pick-up: cab in front, an open bed behind (its dark floor and body-coloured walls)
        ((-0.5, 0.5, 0.5, 0.22, 0.58, "body"), (-0.05, 0.25, 0.45, 0.58, 1.0, "glass"),
         (-0.5, -0.1, 0.5, 0.58, 0.72, "body"), *_wheels(0.32, -0.3, 0.17, 0.32), *_lights(0.45, 0.52)),
        # and the fixed look, so data rendered either way stays one domain
        _SHAPES[AgentLabel.CAR],
    ),
    AgentLabel.TRUCK: (
        # box truck: cargo box behind a lower cab
        ((-0.5, 0.25, 0.5, 0.14, 1.0, "body"), (0.27, 0.5, 0.47, 0.1, 0.72, "dark"),
         (0.45, 0.505, 0.44, 0.42, 0.7, "glass"), *_wheels(0.38, -0.35, 0.1, 0.15), *_lights(0.14, 0.2)),
        # tanker / flatbed: a low grey load behind a body-coloured cab
        ((-0.5, 0.2, 0.45, 0.15, 0.7, "metal"), (0.22, 0.5, 0.48, 0.12, 0.85, "body"),
         (0.45, 0.505, 0.44, 0.5, 0.82, "glass"), *_wheels(0.38, -0.32, 0.1, 0.15), *_lights(0.14, 0.2)),
        _SHAPES[AgentLabel.TRUCK] + _wheels(0.4, -0.35, 0.1, 0.12),
    ),
    AgentLabel.BUS: (
        ((-0.5, 0.5, 0.5, 0.1, 1.0, "body"), (-0.48, 0.47, 0.505, 0.45, 0.85, "glass"),
         (0.49, 0.505, 0.45, 0.2, 0.85, "glass"), *_wheels(0.36, -0.3, 0.08, 0.12), *_lights(0.15, 0.22)),
        _SHAPES[AgentLabel.BUS] + _wheels(0.36, -0.3, 0.08, 0.1),
    ),
    AgentLabel.PEDESTRIAN: (
        _SHAPES[AgentLabel.PEDESTRIAN],
        # narrower legs, a coat to the knee
        ((-0.3, 0.3, 0.3, 0.0, 0.3, "dark"), (-0.5, 0.5, 0.5, 0.3, 0.86, "body"), (-0.3, 0.3, 0.3, 0.86, 1.0, "skin")),
        # trousers in the body colour, a dark jacket
        ((-0.4, 0.4, 0.4, 0.0, 0.48, "body"), (-0.5, 0.5, 0.5, 0.48, 0.87, "dark"), (-0.3, 0.3, 0.3, 0.87, 1.0, "skin")),
    ),
}

#: The vehicle looks a renderer can draw: ``fixed`` (one shape per class) or ``varied``.
VEHICLE_SHAPES = ("fixed", "varied")


def check_vehicle_shapes(vehicle_shapes: str) -> str:
    """``vehicle_shapes`` if it is one of ``VEHICLE_SHAPES``, else ValueError naming them."""
    if vehicle_shapes not in VEHICLE_SHAPES:
        raise ValueError(f"vehicle shapes {vehicle_shapes!r}: use one of {', '.join(VEHICLE_SHAPES)}")
    return vehicle_shapes


def agent_parts(agent: AgentState, vehicle_shapes: str = "fixed") -> tuple[Part, ...]:
    """The part boxes ``agent`` is drawn with: its class's one shape, or with ``varied`` shapes one of its
    class's bodies, chosen by the agent's id (so an agent keeps its body in every frame and process)."""
    if check_vehicle_shapes(vehicle_shapes) == "fixed":
        return _SHAPES[agent.label]
    variants = _VARIED_SHAPES.get(agent.label)
    if not variants:
        return _SHAPES[agent.label]
    # Bits above the palette's choice (id % palette length), so body and colour vary independently.
    return variants[(stable_id(agent.sumo_id) >> 16) % len(variants)]


ROLE_COLORS = {"glass": (0.12, 0.14, 0.18), "dark": (0.08, 0.08, 0.08), "skin": (0.85, 0.68, 0.55),
                "metal": (0.55, 0.56, 0.58), "tail_light": (0.75, 0.06, 0.05), "head_light": (0.92, 0.9, 0.8)}
