"""Choose a model's operating point (``agent_decode.OperatingPoint``) on validation clips:
``qcraft-wm fit-operating-point``.

The operating point is the score an agent needs to be reported. One threshold for every model and
class group (0.5 until session 13) reports a different share of what each model finds, because the
scores move with the training data: in session 12 a fine-tune on harder scenes scored the same cars
lower and at 0.5 reported a car LET recall of 0.351 at precision 0.817 on the 800 held-out clips, where
the default reported 0.484 at 0.778; at about equal precision the two were 0.46 against 0.48. Issue 10
states the car target as recall *at a precision*, so each model should report from the score that
reaches that precision on clips it has not trained on.

The rule, per class group and range band (within the group's target radius, ``NEAR_RADIUS_M``, and
beyond it to EVAL_RADIUS_M: precision falls with range, so a score that is precise near the ego floods
the far range with false agents): the lowest threshold on THRESHOLD_GRID at which the group's precision
in the band on the validation clips is at least TARGET_PRECISION (issue 10's 0.7) with one-sided 95 % confidence (the 5th
percentile of a bootstrap that resamples whole episodes: the clips of one episode share traffic, so
they are not independent), and above which the measured precision never falls below TARGET_PRECISION
(a low threshold that passes by chance below one that fails is not taken). The confidence is asked of
the chosen threshold only: a first version asked it of every higher one too, and on the session-13
validation clips chose 0.85 for the default's cars (3 % recall), because at 0.8 only 31 detections
are left and the bound of so few is wide (0.68 at a measured 0.87), not because precision fell.
Precision is counted as the target sets count it (``agent_metrics.TARGET_SETS``): LET precision for cars,
2 m precision for pedestrians; bicycles, which have no target, are counted as cars are (LET). A band
with fewer than MIN_AGENTS agents in scope, or for which no threshold qualifies, keeps
``DEFAULT_EXISTENCE_THRESHOLD`` (what the node reported before operating points) and the record says why.

Why two bands (session 13): the rule first counted each group within its target radius only. It chose
0.25 for the default's pedestrians on the validation clips, and on the 800 held-out clips that
reported 707 pedestrians within 50 m where 0.5 reported 145: 469 of them at 30-50 m, 5 % precise.

Validation clips are clips of the training maps that the model never trained on: never an evaluation
split (the operating point becomes part of the model, like its weights), never a folder the model's
last run trained on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qcraft_world_model.data.clip_dataset import DatasetError
from qcraft_world_model.data.clip_tensors import ClipTensors
from qcraft_world_model.eval.agent_metrics import WindowAgents, group_within
from qcraft_world_model.eval.evaluate import EVAL_RADIUS_M, predicted_windows, require_training_clips
from qcraft_world_model.model.agent_decode import DEFAULT_EXISTENCE_THRESHOLD, NEAR_RADIUS_M, OperatingPoint
from qcraft_world_model.model.detection import CLASS_GROUPS
from qcraft_world_model.model.world_model import WorldModel

#: Thresholds tried, 0.1 … 0.9.
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(2, 19))
#: Issue 10's precision for the car target.
TARGET_PRECISION = 0.7
#: One-sided confidence that the validation precision reaches TARGET_PRECISION.
CONFIDENCE = 0.95
#: Fewest agents in scope a group's threshold is chosen on.
MIN_AGENTS = 30
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0

#: Per class group (CLASS_GROUPS order): whether its precision is LET's (cars, as their target; bicycles as
#: cars) or within 2 m (pedestrians, as theirs).
_LET = (True, False, True)


def _counts(windows: list[WindowAgents], episodes: np.ndarray, group: int, band: tuple[float, float],
            threshold: float, steps_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per episode: matches and false positives of ``group`` in ``band`` (m) at ``threshold``; and the
    agents in scope there."""
    keys = ("let_matched", "let_false_positives") if _LET[group] else ("matched", "false_positives")
    hits, false = np.zeros(episodes.max() + 1), np.zeros(episodes.max() + 1)
    total = 0
    for w, episode in zip(windows, episodes):
        row = group_within([w], threshold, steps_s, 1, group, band[1], band[0])
        hits[episode] += row[keys[0]]
        false[episode] += row[keys[1]]
        total += row["true_agents"]
    return hits, false, total


def precision_lower_bound(hits: np.ndarray, false: np.ndarray, confidence: float = CONFIDENCE) -> float | None:
    """The one-sided lower confidence bound of the pooled precision sum(hits) / sum(hits + false), by a
    bootstrap over the rows (episodes); None where nothing was reported."""
    if hits.sum() + false.sum() == 0:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draw = rng.integers(0, len(hits), (BOOTSTRAP_RESAMPLES, len(hits)))
    reported = hits[draw].sum(1) + false[draw].sum(1)
    precision = np.divide(hits[draw].sum(1), reported, out=np.zeros(BOOTSTRAP_RESAMPLES), where=reported > 0)
    return float(np.percentile(precision[reported > 0], (1 - confidence) * 100))


def choose_threshold(rows: Sequence[dict[str, Any]]) -> float | None:
    """The lowest threshold whose lower bound reaches TARGET_PRECISION and above which the measured
    precision stays at or above it (rows in grid order, each with "threshold", "precision" and
    "precision_lower"); None where there is none. Thresholds above every score report nothing (no
    precision, None): they neither hold nor break the run."""
    chosen = None
    for row in reversed(rows):
        if row["precision"] is None:
            continue
        if row["precision"] < TARGET_PRECISION:
            break
        if row["precision_lower"] is not None and row["precision_lower"] >= TARGET_PRECISION:
            chosen = row["threshold"]
    return chosen


def _choose_band(windows: list[WindowAgents], episodes: np.ndarray, group: int, band: tuple[float, float],
                 steps_s: np.ndarray) -> dict[str, Any]:
    """One group's threshold in one band, with the curve it was read from."""
    rows, total = [], 0
    for threshold in THRESHOLD_GRID:
        hits, false, total = _counts(windows, episodes, group, band, threshold, steps_s)
        lower = precision_lower_bound(hits, false)
        rows.append({"threshold": threshold, "recall": round(hits.sum() / total, 4) if total else None,
                     "precision": round(hits.sum() / (hits.sum() + false.sum()), 4) if hits.sum() + false.sum() else None,
                     "precision_lower": None if lower is None else round(lower, 4)})
    entry: dict[str, Any] = {"band_m": list(band), "agents": total, "precision": "LET" if _LET[group] else "2 m",
                             "curve": rows}
    chosen = choose_threshold(rows) if total >= MIN_AGENTS else None
    if total < MIN_AGENTS:
        entry["note"] = f"fewer than {MIN_AGENTS} agents in scope: {DEFAULT_EXISTENCE_THRESHOLD:g} is kept"
    elif chosen is None:
        entry["note"] = (f"no threshold reaches precision {TARGET_PRECISION:g} with {CONFIDENCE:.0%} confidence: "
                         f"{DEFAULT_EXISTENCE_THRESHOLD:g} is kept")
    entry["threshold"] = DEFAULT_EXISTENCE_THRESHOLD if chosen is None else chosen
    return entry


def fit_operating_point(windows: list[WindowAgents], episodes: Sequence[str], steps_s: np.ndarray,
                        groups: Sequence[str] = CLASS_GROUPS) -> tuple[OperatingPoint, dict[str, Any]]:
    """The operating point of ``windows`` (one per clip, ``episodes`` naming each one's episode; ``steps_s``:
    the paths' times) and a record of the choice: per group and band the agents, the chosen threshold and
    the curve it was read from. Groups not in ``groups`` keep DEFAULT_EXISTENCE_THRESHOLD in both bands
    (their curves are still recorded): for a group whose choice did not hold where it was checked."""
    unknown = sorted(set(groups) - set(CLASS_GROUPS))
    if unknown:
        raise ValueError(f"no class group {', '.join(unknown)}: the groups are {', '.join(CLASS_GROUPS)}")
    names = sorted(set(episodes))
    number = {name: i for i, name in enumerate(names)}
    episodes = np.array([number[e] for e in episodes], np.int64)
    near, far, record = [], [], {}
    for group, name in enumerate(CLASS_GROUPS):
        radius = NEAR_RADIUS_M[group]
        within = _choose_band(windows, episodes, group, (0.0, radius), steps_s)
        beyond = _choose_band(windows, episodes, group, (radius, EVAL_RADIUS_M), steps_s)
        if name not in groups:
            for band in (within, beyond):
                band["chosen"], band["threshold"] = band["threshold"], DEFAULT_EXISTENCE_THRESHOLD
                band["note"] = f"not chosen (left out of the groups): {DEFAULT_EXISTENCE_THRESHOLD:g} is kept"
        near.append(within["threshold"])
        far.append(beyond["threshold"])
        record[name] = {"within": within, "beyond": beyond}
    return OperatingPoint(tuple(near), tuple(far), NEAR_RADIUS_M), {
        "groups": record, "clips": len(windows), "episodes": len(names), "chosen_groups": list(groups),
        "rule": f"per group and range band, the lowest threshold at which the {CONFIDENCE:.0%} one-sided lower bound "
                f"of precision (bootstrap over episodes) is >= {TARGET_PRECISION:g} and above which the measured "
                f"precision stays >= {TARGET_PRECISION:g}"}


def _trained_on(model_folder: str | Path) -> list[Path]:
    """The data folders the model's last training run read (its config.json), resolved; [] if unknown."""
    try:
        training = json.loads((Path(model_folder) / "config.json").read_text()).get("training") or {}
        data = (training.get("config") or {}).get("data") or ""
    except (OSError, ValueError, AttributeError):
        return []
    return [Path(folder).resolve() for folder in str(data).split(",") if folder]


def fit_folder(model: WorldModel, model_folder: str | Path, data_root: str | Path, every: int = 1,
               groups: Sequence[str] = CLASS_GROUPS) -> tuple[OperatingPoint, dict[str, Any]]:
    """Choose on every ``every``-th clip of a validation clip dataset (or several, comma-separated), for
    ``groups`` (the others keep the default)."""
    require_training_clips(data_root, "choose the operating point")
    seen = set(_trained_on(model_folder))
    for folder in str(data_root).split(","):
        if Path(folder).resolve() in seen:
            raise DatasetError(f"{folder} is what {model_folder} was trained on: choose the operating point on "
                               "clips it has not seen")
    data = ClipTensors.load(data_root, model.config, every=every)
    windows = [w for _, w in predicted_windows(model, data, range(len(data)))]
    steps_s = np.array(model.config.path_steps) / model.config.rate_hz
    operating, record = fit_operating_point(windows, data.episodes, steps_s, groups)
    return operating, {**record, "data": str(data_root), "every": every}

