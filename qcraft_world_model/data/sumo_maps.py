"""The road maps scenes are generated on, and their traffic demand.

Real OpenStreetMap networks shipped with SUMO (ODbL data, EPL-2.0 tool) and
``netgenerate`` random networks. Where a map ships no (or too little) demand,
``randomTrips.py`` adds seeded trips per vehicle class and pedestrians. Files
made here are cached per (map, seed) and written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


class MapError(ValueError):
    """Unknown map, missing SUMO, or a SUMO tool that failed; the message says which."""


@dataclass(frozen=True)
class RandomDemand:
    """Trips added by randomTrips.py: seconds between departures per class (None: none)."""

    passenger: float | None = 1.0
    truck: float | None = 12.0
    bus: float | None = 30.0
    bicycle: float | None = 6.0
    pedestrian: float | None = 1.5
    #: Simulated seconds of demand to generate.
    seconds: float = 1800.0


@dataclass(frozen=True)
class MapSpec:
    """One map: its network, shipped demand, and what randomTrips adds."""

    name: str
    description: str
    #: Network file relative to $SUMO_HOME/tools/game, or None for a netgenerate network.
    net: str | None
    routes: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    #: Simulation start time, s (a shipped demand may start at 15:00 = 54000 s).
    begin: float = 0.0
    extra_sumo_args: tuple[str, ...] = ()
    random_demand: RandomDemand | None = None
    #: netgenerate arguments (without seed and output) for generated networks.
    netgenerate: tuple[str, ...] = ()
    #: Route still ahead that makes a vehicle worth following as the ego, m
    #: (small intersection maps cannot offer long routes).
    min_ego_route_m: float = 300.0
    #: Generated networks and random demands are made for ``seed % variants``
    #: and cached: making them costs seconds per seed (Berlin's demand ~9 s),
    #: while SUMO's own seed, the ego choice and the rendering still vary per seed.
    variants: int = 8
    #: Data source, for attribution in manifests.
    source: str = "OpenStreetMap (ODbL) via SUMO"
    tags: tuple[str, ...] = field(default_factory=tuple)


_GAME = "tools/game"
_NETGEN_COMMON = ("--sidewalks.guess", "--crossings.guess", "--tls.guess", "--junctions.corner-detail", "5",
                  "--default.lanewidth", "3.3", "--no-turnarounds", "true")

MAPS: dict[str, MapSpec] = {spec.name: spec for spec in (
    MapSpec("berlin_adlershof", "Berlin Adlershof: urban streets, sidewalks, crossings",
            "DRT/osm.net.xml", random_demand=RandomDemand(), tags=("urban", "pedestrians")),
    MapSpec("a10_motorway", "Berlin A10 ring motorway near Königs Wusterhausen: cars and trucks",
            "A10KW/osm.net.xml",
            routes=tuple(f"A10KW/{name}" for name in (
                "osm.passenger.rou.xml", "osm.truck.rou.xml", "osm.passenger_mw.rou.xml",
                "osm.truck_mw.rou.xml", "osm.passenger_mwb.rou.xml", "osm.truck_mwb.rou.xml")),
            extra_sumo_args=("--time-to-teleport", "0"), tags=("motorway", "trucks")),
    MapSpec("ingolstadt", "Ingolstadt intersection with its shipped flows, plus pedestrians",
            "fkk_in/ingolstadt.net.xml.gz", routes=("fkk_in/fkk_in.rou.xml",),
            additional=("fkk_in/fkk_in.tls.add.xml",),
            random_demand=RandomDemand(passenger=None, truck=None, bus=None, bicycle=None, pedestrian=4.0),
            min_ego_route_m=80.0, tags=("urban", "intersection")),
    MapSpec("braunschweig", "Braunschweig intersection, recorded demand 15:00-16:00 (2,325 vehicles)",
            "fokr_bs_demo/fokr_bs.net.xml.gz",
            routes=("fokr_bs_demo/15_16_bicycle.trips.xml", "fokr_bs_demo/15_16_ped.trips.xml",
                    "fokr_bs_demo/15_16_veh.trips.xml.gz"),
            additional=("fokr_bs_demo/vtypes_default.add.xml", "fokr_bs_demo/signalPlan.add.xml"),
            begin=54000.0, extra_sumo_args=("--pedestrian.striping.stripe-width", "0.55"),
            min_ego_route_m=80.0, tags=("urban", "intersection", "recorded-demand")),
    MapSpec("braunschweig_center", "Braunschweig city centre (OSM, SUMO's 3D demo network): random cars, trucks, "
            "buses, bicycles, pedestrians", "bs3d/bs.net.xml", random_demand=RandomDemand(),
            min_ego_route_m=150.0, tags=("urban", "pedestrians")),
    MapSpec("random_grid", "netgenerate grid town with sidewalks and signals", None,
            netgenerate=("--grid", "--grid.number", "6", "--grid.length", "120", "--default.lanenumber", "2",
                         *_NETGEN_COMMON),
            random_demand=RandomDemand(passenger=1.2, pedestrian=2.0), source="SUMO netgenerate",
            tags=("synthetic",)),
    MapSpec("random_spider", "netgenerate spider-web town with sidewalks", None,
            netgenerate=("--spider", "--spider.arm-number", "7", "--spider.circle-number", "5",
                         "--spider.space-radius", "90", "--default.lanenumber", "2", *_NETGEN_COMMON),
            random_demand=RandomDemand(passenger=1.2, pedestrian=2.0), source="SUMO netgenerate",
            tags=("synthetic",)),
    MapSpec("random_organic", "netgenerate random road network with sidewalks", None,
            netgenerate=("--rand", "--rand.iterations", "300", "--rand.max-distance", "250",
                         "--default.lanenumber", "2", *_NETGEN_COMMON),
            random_demand=RandomDemand(passenger=1.0, pedestrian=2.0), source="SUMO netgenerate",
            tags=("synthetic",)),
)}


def sumo_home() -> Path:
    """The SUMO installation that has the shipped maps (``tools/game``).

    ``$SUMO_HOME`` first, then the ``eclipse-sumo`` wheel's. Importing libsumo
    may point ``$SUMO_HOME`` at the ``sumo_data`` wheel, which has no maps, so
    each candidate is checked rather than trusted.
    """
    candidates = [Path(os.environ["SUMO_HOME"])] if os.environ.get("SUMO_HOME") else []
    try:
        import sumo  # the eclipse-sumo wheel
        candidates.append(Path(sumo.SUMO_HOME))
    except ImportError:
        pass
    for home in candidates:
        if (home / _GAME).is_dir() and (home / "tools" / "randomTrips.py").is_file():
            return home
    raise MapError("no SUMO installation with its maps found (looked in: "
                   f"{', '.join(map(str, candidates)) or 'nothing: SUMO_HOME unset, eclipse-sumo missing'}); "
                   "pip install eclipse-sumo libsumo sumolib, or set SUMO_HOME")


def get_map(name: str) -> MapSpec:
    try:
        return MAPS[name]
    except KeyError:
        raise MapError(f"unknown map {name!r}; known maps: {', '.join(MAPS)}") from None


@dataclass(frozen=True)
class ScenarioFiles:
    """Everything SUMO needs to run one (map, seed)."""

    map: MapSpec
    seed: int
    net: Path
    routes: tuple[Path, ...]
    additional: tuple[Path, ...]

    def sumo_args(self, step_length: float) -> list[str]:
        """Command line for libsumo.start (without the binary name)."""
        args = ["-n", str(self.net), "--seed", str(self.seed), "--step-length", f"{step_length:g}",
                "--begin", f"{self.map.begin:g}", "--ignore-route-errors", "true",
                "--no-step-log", "true", "--no-warnings", "true", "--duration-log.disable", "true",
                "--collision.action", "warn", "--xml-validation", "never"]
        if self.routes:
            args += ["-r", ",".join(map(str, self.routes))]
        if self.additional:
            args += ["-a", ",".join(map(str, self.additional))]
        return args + list(self.map.extra_sumo_args)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qcraft_world_model" / "sumo"


def prepare_scenario(name: str, seed: int, cache: Path | None = None) -> ScenarioFiles:
    """Resolve a map's files, generating (and caching) its network and random demand."""
    spec = get_map(name)
    home = sumo_home()
    game = home / _GAME
    shipped_net = game / spec.net if spec.net else None
    variant = seed % spec.variants
    key = hashlib.sha256(json.dumps([asdict(spec), variant], sort_keys=True).encode()).hexdigest()[:12]
    folder = (cache or cache_dir()) / f"{name}-variant{variant}-{key}"
    if spec.net is None or spec.random_demand is not None:
        if not (folder / "done").is_file():
            _generate(spec, variant, shipped_net, folder, home)
    net = shipped_net if shipped_net is not None else folder / "net.net.xml"
    routes = tuple(game / r for r in spec.routes)
    if spec.random_demand is not None:
        routes += tuple(sorted(folder.glob("*.rou.xml")))
    additional = tuple(game / a for a in spec.additional)
    for path in (net, *routes, *additional):
        if not path.is_file():
            raise MapError(f"map {name!r}: file {path} is missing (SUMO installation incomplete?)")
    return ScenarioFiles(spec, seed, net, routes, additional)


def _generate(spec: MapSpec, seed: int, shipped_net: Path | None, folder: Path, home: Path) -> None:
    """Make the network and demand in a scratch folder, then move it into the cache whole."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp"))
    try:
        net = shipped_net
        if net is None:
            net = work / "net.net.xml"
            _run([str(home / "bin" / "netgenerate"), *spec.netgenerate, "--seed", str(seed),
                  "-o", str(net)], f"netgenerate for map {spec.name!r}", home, work)
        demand = spec.random_demand
        if demand is not None:
            classes = [("passenger", demand.passenger), ("truck", demand.truck), ("bus", demand.bus),
                       ("bicycle", demand.bicycle), ("pedestrian", demand.pedestrian)]
            for offset, (vclass, period) in enumerate(classes):
                if period is not None:
                    _random_trips(home, net, work / f"{vclass}.rou.xml", vclass, period,
                                  seed * 10 + offset, spec.begin, demand.seconds)
        for scratch in work.glob("*.trips.xml"):
            scratch.unlink()  # randomTrips' intermediate output; the .rou.xml files are what SUMO reads
        (work / "done").write_text(json.dumps({"map": spec.name, "seed": seed}) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(work, folder)
        except OSError:
            if not (folder / "done").is_file():  # not a concurrent generator winning the race
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _random_trips(home: Path, net: Path, out: Path, vclass: str, period: float, seed: int,
                  begin: float, seconds: float) -> None:
    args = [sys.executable, str(home / "tools" / "randomTrips.py"), "-n", str(net), "--seed", str(seed),
            "-b", f"{begin:g}", "-e", f"{begin + seconds:g}", "--period", f"{period:g}",
            "--prefix", f"{vclass}_", "--fringe-factor", "5", "--min-distance", "200",
            "--validate"]
    if vclass == "pedestrian":
        args += ["--pedestrians", "--max-distance", "2000"]
    else:
        args += ["--vehicle-class", vclass, "--vclass", vclass]
    args += ["-o", str(out.with_name(out.name.replace(".rou.xml", ".trips.xml"))), "-r", str(out)]
    _run(args, f"randomTrips ({vclass}) for {net.name}", home, out.parent)


def _run(args: list[str], what: str, home: Path, cwd: Path) -> None:
    env = {**os.environ, "SUMO_HOME": str(home)}
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise MapError(f"{what} failed (exit {result.returncode}): {' | '.join(tail)}")
