"""Agent metrics of the field: detection (nuScenes AP, Waymo-style LET), box errors, forecasting, EPA.

Definitions, each as the field uses it:
- **AP** (nuScenes, center distance): per class group and threshold d ∈ {0.5, 1, 2, 4} m, predictions
  of all windows sorted by score are matched greedily to the nearest unmatched ground truth of their
  group within d; precision is interpolated at 101 recall points and AP is the mean of
  (precision − 0.1)⁺ / 0.9 over recall > 0.1. ``mAP`` is the mean over groups and thresholds.
- **Operating point**: detections at or above the score threshold (one for all, or the model's own per
  class group: ``agent_decode.OperatingPoint``), matched one-to-one
  (Hungarian) within 2 m → ``recall_2m``, ``precision_2m``; with the LET criterion (Waymo's
  longitudinal-error-tolerant idea: lateral error ≤ 2 m, error along the camera's line of sight
  ≤ max(2 m, 10 % of the range)) → ``let_recall``, ``let_precision``.
- **True-positive errors** on the 2 m matches: ATE (centre distance, m), ASE (1 − IoU of the boxes
  aligned at centre and heading), AOE (absolute heading error, rad), AVE (velocity error, m/s).
- **Forecasting** on the 2 m matches: minADE/minFDE over the k most likely paths (k = 1 and K) at
  1, 2, 3 s; miss rate: every one of the top-K paths has a pointwise error ≥ 2 m (nuScenes).
- **EPA** (end-to-end prediction accuracy, ViP3D): (hits − 0.5 · false positives) / ground truth, a
  hit being a ground-truth agent matched within 2 m whose best-of-K path ends within 2 m at the
  horizon; it rewards detecting *and* forecasting.

Ground truth in scope: present at t0, within ``max_range_m``, and visible (visible share of its
pixels ≥ ``min_visibility`` where the data has rendered visibility, else its box centre in view).
Agents present but out of scope (hidden, outside the view, just beyond the range) are *ignored*:
a prediction on one is neither a true nor a false positive (KITTI's "don't care"). Nothing is
capped: every agent the clip holds is scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
from scipy.optimize import linear_sum_assignment

from qcraft_world_model.model.agent_decode import NEAR_RADIUS_M, OperatingPoint
from qcraft_world_model.model.detection import CLASS_GROUPS, GROUP_OF_LABEL

AP_THRESHOLDS_M = (0.5, 1.0, 2.0, 4.0)
MATCH_RADIUS_M = 2.0
MISS_THRESHOLD_M = 2.0
RANGE_BANDS_M = ((0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (30.0, 50.0))
VISIBILITY_BINS = ((0.0, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01))
EPA_FP_WEIGHT = 0.5


@dataclass
class WindowAgents:
    """One window: ground truth (G agents) and predictions (D agents), ego frame at t0."""

    #: Ground truth: (G, 2) position, (G,) heading, (G, 3) size, (G, 2) velocity, (G,) label,
    #: (G, P, 2) future at the path steps, (G, P) valid, (G,) visible share (NaN: unknown),
    #: (G,) in scope, (G,) ignore (present but out of scope).
    true_position: np.ndarray
    true_heading: np.ndarray
    true_size: np.ndarray
    true_velocity: np.ndarray
    true_label: np.ndarray
    true_future: np.ndarray
    true_future_valid: np.ndarray
    true_visibility: np.ndarray
    in_scope: np.ndarray
    ignore: np.ndarray
    #: Predictions: (D,) score, (D,) label, (D, 2) position, (D,) heading, (D, 3) size, (D, 2) velocity,
    #: (D, K, P, 2) paths, most likely first.
    score: np.ndarray
    label: np.ndarray
    position: np.ndarray
    heading: np.ndarray
    size: np.ndarray
    velocity: np.ndarray
    paths: np.ndarray
    #: The camera's position in the ego frame (the line of sight for LET).
    sensor_xy: np.ndarray
    #: Oracle baselines' paths for the ground truth: name → (G, 1, P, 2), NaN where one cannot be made.
    baselines: dict
    #: (G,) whether the agent's box centre is inside some camera's image (None: unknown). An agent in
    #: scope with it outside is cut by the image edge: the targets block reports those cars apart.
    true_in_view: np.ndarray | None = None


def groups_of(labels: np.ndarray) -> np.ndarray:
    return np.array([GROUP_OF_LABEL[int(label)] for label in labels], np.int64).reshape(-1)


#: What decides which detections are reported: one score threshold for all, or a model's operating point
#: (a threshold per class group).
Threshold = Union[float, OperatingPoint]


def reported(w: WindowAgents, threshold: Threshold) -> np.ndarray:
    """The window's detections at the operating point."""
    if isinstance(threshold, OperatingPoint):
        return threshold.reported(w.score, w.label, w.position)
    return w.score >= threshold


def threshold_record(threshold: Threshold) -> float | dict[str, dict[str, float]]:
    """The operating point as the evaluation JSON states it."""
    return threshold.as_dict() if isinstance(threshold, OperatingPoint) else threshold


def _ap(tp: np.ndarray, scores: np.ndarray, positives: int, min_recall: float = 0.1,
        min_precision: float = 0.1) -> float | None:
    """nuScenes' AP from per-prediction TP flags and scores."""
    if positives == 0:
        return None
    if len(tp) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(tp[order])
    precision = hits / np.arange(1, len(tp) + 1)
    recall = hits / positives
    interp = np.interp(np.linspace(0, 1, 101), recall, precision, right=0)
    interp = interp[round(100 * min_recall) + 1:] - min_precision
    return float(np.clip(interp, 0, None).mean() / (1 - min_precision))


def _greedy_center_matches(window: WindowAgents, group: int, threshold: float) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """nuScenes matching in one window for one group: (pred index, TP flag, matched truth or -1), and
    predictions on ignored agents dropped."""
    pred = np.flatnonzero(groups_of(window.label) == group)
    truth_groups = groups_of(window.true_label)
    scope = np.flatnonzero(window.in_scope & (truth_groups == group))
    ignored = np.flatnonzero(window.ignore)
    order = pred[np.argsort(-window.score[pred], kind="stable")]
    taken: set[int] = set()
    kept, flags, matched = [], [], []
    for p in order:
        best, best_d = -1, threshold
        for t in scope:
            d = float(np.linalg.norm(window.position[p] - window.true_position[t]))
            if t not in taken and d <= best_d:
                best, best_d = int(t), d
        if best >= 0:
            taken.add(best)
            kept.append(p), flags.append(True), matched.append(best)
            continue
        if len(ignored) and np.linalg.norm(window.true_position[ignored] - window.position[p], axis=1).min() \
                <= max(threshold, MATCH_RADIUS_M):
            continue  # on an agent nobody can see: neither right nor wrong
        kept.append(p), flags.append(False), matched.append(-1)
    return np.array(kept, np.int64), np.array(flags, bool), np.array(matched, np.int64)


def _in_band(distance: np.ndarray, band: tuple[float, float] | None) -> np.ndarray:
    return np.ones(len(distance), bool) if band is None else (distance >= band[0]) & (distance < band[1])


def average_precision(windows: list[WindowAgents], group: int, threshold: float,
                      band: tuple[float, float] | None = None) -> float | None:
    """AP for one group and threshold; in a range band, TPs and misses count by the truth's range,
    false positives by their own."""
    tp_all, score_all, positives = [], [], 0
    for w in windows:
        truth_range = np.linalg.norm(w.true_position, axis=1)
        positives += int((w.in_scope & (groups_of(w.true_label) == group) & _in_band(truth_range, band)).sum())
        kept, flags, matched = _greedy_center_matches(w, group, threshold)
        if len(kept) == 0:
            continue
        distance = np.where(flags, truth_range[np.maximum(matched, 0)], np.linalg.norm(w.position[kept], axis=1))
        inside = _in_band(distance, band)
        tp_all.append(flags[inside]), score_all.append(w.score[kept][inside])
    tp = np.concatenate(tp_all) if tp_all else np.zeros(0, bool)
    scores = np.concatenate(score_all) if score_all else np.zeros(0)
    return _ap(tp.astype(float), scores, positives)


def _hungarian(cost: np.ndarray, admissible: np.ndarray) -> list[tuple[int, int]]:
    if cost.size == 0 or not admissible.any():
        return []
    rows, cols = linear_sum_assignment(np.where(admissible, cost, 1e6))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if admissible[r, c]]


def operating_matches(w: WindowAgents, keep: np.ndarray, let: bool) -> tuple[list[tuple[int, int]], np.ndarray]:
    """One-to-one matches of the kept predictions to in-scope truth of the same group (centre within 2 m,
    or LET), and the flags of the kept predictions that lie on ignored agents."""
    pred, truth = np.flatnonzero(keep), np.flatnonzero(w.in_scope)
    same_group = groups_of(w.label[pred])[:, None] == groups_of(w.true_label[truth])[None]
    delta = w.position[pred][:, None] - w.true_position[truth][None]  # (D, G, 2)
    distance = np.linalg.norm(delta, axis=-1)
    if let:
        sight = w.true_position[truth] - w.sensor_xy
        rng = np.linalg.norm(sight, axis=1).clip(min=1e-6)
        unit = sight / rng[:, None]
        along = np.abs((delta * unit[None]).sum(-1))
        across = np.abs(delta[..., 0] * unit[None, :, 1] - delta[..., 1] * unit[None, :, 0])
        tolerance = np.maximum(2.0, 0.1 * rng)[None]
        admissible = (across <= 2.0) & (along <= tolerance) & same_group
        cost = along / tolerance + across / 2.0
    else:
        admissible = (distance <= MATCH_RADIUS_M) & same_group
        cost = distance
    pairs = [(int(pred[r]), int(truth[c])) for r, c in _hungarian(cost, admissible)]
    matched = {p for p, _ in pairs}
    ignored = np.flatnonzero(w.ignore)
    on_ignored = np.zeros(len(w.score), bool)
    for p in pred:
        if p not in matched and len(ignored):
            on_ignored[p] = np.linalg.norm(w.true_position[ignored] - w.position[p], axis=1).min() <= MATCH_RADIUS_M
    return pairs, on_ignored


def _box_iou_aligned(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boxes of sizes a, b (l, w, h) sharing centre and heading (nuScenes' ASE)."""
    inter = np.prod(np.minimum(a, b))
    return float(inter / (np.prod(a) + np.prod(b) - inter))


def _wrap(angle: np.ndarray) -> np.ndarray:
    return np.abs(np.arctan2(np.sin(angle), np.cos(angle)))


def _path_errors(paths: np.ndarray, future: np.ndarray, valid: np.ndarray, steps_s: np.ndarray,
                 k: int, horizon: float) -> tuple[float | None, float | None]:
    """(minADE_k, minFDE_k) at ``horizon`` for one agent, None where the truth does not reach it."""
    errors = np.linalg.norm(paths[:k] - future[None], axis=-1)  # (k, P)
    upto = (steps_s <= horizon + 1e-6) & valid
    end = int(np.searchsorted(steps_s, horizon + 1e-6)) - 1
    ade = float(errors[:, upto].mean(1).min()) if upto.any() else None
    fde = float(errors[:, end].min()) if end >= 0 and valid[end] else None
    return ade, fde


@dataclass
class ForecastScores:
    """minADE/minFDE/miss rate over matched agents, with the windows' path steps."""

    steps_s: np.ndarray
    modes: int
    horizons: tuple[float, ...] = (1.0, 2.0, 3.0)

    def __post_init__(self) -> None:
        self.ade: dict[tuple[int, float], list[float]] = {}
        self.fde: dict[tuple[int, float], list[float]] = {}
        self.misses: list[bool] = []
        self.hit: list[bool] = []

    def add(self, paths: np.ndarray, future: np.ndarray, valid: np.ndarray) -> bool:
        """Score one agent's paths (K', P, 2), most likely first; returns whether it is a hit for EPA."""
        for k in sorted({1, self.modes}):
            for h in self.horizons:
                ade, fde = _path_errors(paths, future, valid, self.steps_s, k, h)
                if ade is not None:
                    self.ade.setdefault((k, h), []).append(ade)
                if fde is not None:
                    self.fde.setdefault((k, h), []).append(fde)
        if not valid.any():
            return False
        errors = np.linalg.norm(paths[: self.modes] - future[None], axis=-1)[:, valid]
        self.misses.append(bool((errors.max(1) >= MISS_THRESHOLD_M).all()))
        last = int(np.flatnonzero(valid)[-1])
        hit = bool(np.linalg.norm(paths[: self.modes, last] - future[last], axis=-1).min() < MISS_THRESHOLD_M)
        self.hit.append(hit)
        return hit

    def summary(self) -> dict:
        def table(values: dict, k: int) -> dict[str, float | None]:
            return {f"{h:g}s": (round(float(np.mean(values[(k, h)])), 4) if values.get((k, h)) else None)
                    for h in self.horizons}

        out = {"minADE_1": table(self.ade, 1), "minFDE_1": table(self.fde, 1),
               "minADE_K": table(self.ade, self.modes), "minFDE_K": table(self.fde, self.modes),
               "miss_rate_K": round(float(np.mean(self.misses)), 4) if self.misses else None,
               "K": self.modes, "agents": len(self.misses)}
        return out


def operating_point(windows: list[WindowAgents], threshold: Threshold, steps_s: np.ndarray, modes: int,
                    truth_filter=None, pred_band: tuple[float, float] | None = None  # noqa: ANN001
                    ) -> dict:
    """Recall/precision (2 m and LET), TP errors, forecasting and EPA at one score threshold.

    ``truth_filter`` (window) -> (G,) bool narrows the ground truth scored (the rest is ignored);
    ``pred_band`` (metres from the ego) does the same for false positives: an unmatched prediction
    outside it is neither right nor wrong, as nuScenes drops predictions beyond a class's range and
    as ``average_precision`` counts false positives by their own range. A match counts by the
    truth's range wherever the prediction lies."""
    true_total = detections = matched = let_matched = false_pos = let_false_pos = hits = 0
    ate, ase, aoe, ave = [], [], [], []
    forecast = ForecastScores(steps_s, modes)
    for w in windows:
        scope = w.in_scope if truth_filter is None else w.in_scope & truth_filter(w)
        restricted = WindowAgents(**{**vars(w), "in_scope": scope,
                                     "ignore": w.ignore | (w.in_scope & ~scope)})
        keep = reported(w, threshold)
        pairs, on_ignored = operating_matches(restricted, keep, let=False)
        let_pairs, let_on_ignored = operating_matches(restricted, keep, let=True)
        true_total += int(scope.sum())
        outside = ~_in_band(np.linalg.norm(w.position, axis=1), pred_band)  # (D,): FPs there are not counted
        matched_2m = np.zeros(len(keep), bool)
        matched_2m[[p for p, _ in pairs]] = True
        matched_let = np.zeros(len(keep), bool)
        matched_let[[p for p, _ in let_pairs]] = True
        unmatched_fp = keep & ~on_ignored & ~matched_2m & ~outside
        detections += len(pairs) + int(unmatched_fp.sum())
        matched += len(pairs)
        false_pos += int(unmatched_fp.sum())
        let_matched += len(let_pairs)
        let_false_pos += int((keep & ~let_on_ignored & ~matched_let & ~outside).sum())
        for p, t in pairs:
            ate.append(float(np.linalg.norm(w.position[p] - w.true_position[t])))
            ase.append(1 - _box_iou_aligned(w.size[p], w.true_size[t]))
            aoe.append(float(_wrap(w.heading[p] - w.true_heading[t])))
            ave.append(float(np.linalg.norm(w.velocity[p] - w.true_velocity[t])))
            hits += forecast.add(w.paths[p], w.true_future[t], w.true_future_valid[t])

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    def mean(values: list[float]) -> float | None:
        return round(float(np.mean(values)), 4) if values else None

    return {"true_agents": true_total, "detections": detections, "matched": matched, "let_matched": let_matched,
            "false_positives": false_pos, "let_false_positives": let_false_pos,
            "recall_2m": ratio(matched, true_total), "precision_2m": ratio(matched, matched + false_pos),
            "let_recall": ratio(let_matched, true_total), "let_precision": ratio(let_matched, let_matched + let_false_pos),
            "ate": mean(ate), "ase": mean(ase), "aoe": mean(aoe), "ave": mean(ave),
            "epa": round((hits - EPA_FP_WEIGHT * false_pos) / true_total, 4) if true_total else None,
            **forecast.summary()}


def score_windows(windows: list[WindowAgents], threshold: Threshold, steps_s: np.ndarray, modes: int) -> dict:
    """The ``evaluate`` JSON's agent section: overall, by class group, each also by range band."""
    def block(group: int | None, band: tuple[float, float] | None) -> dict:
        def keep_truth(w: WindowAgents) -> np.ndarray:
            rng = np.linalg.norm(w.true_position, axis=1)
            ok = _in_band(rng, band)
            return ok if group is None else ok & (groups_of(w.true_label) == group)

        if group is None:
            result = operating_point(windows, threshold, steps_s, modes, keep_truth, band)
        else:
            subset = [WindowAgents(**{**vars(w), "score": np.where(groups_of(w.label) == group, w.score, -1.0)})
                      for w in windows]
            result = operating_point(subset, threshold, steps_s, modes, keep_truth, band)
            for d in AP_THRESHOLDS_M:
                ap = average_precision(windows, group, d, band)
                result[f"ap_{d:g}m"] = None if ap is None else round(ap, 4)
        return result

    out = operating_point_by_visibility(windows, threshold, steps_s, modes)
    overall = {**block(None, None), "by_range": {f"{a:g}-{b:g}": block(None, (a, b)) for a, b in RANGE_BANDS_M},
               "by_visibility": out}
    by_class = {}
    for g, name in enumerate(CLASS_GROUPS):
        by_class[name] = {**block(g, None),
                          "by_range": {f"{a:g}-{b:g}": block(g, (a, b)) for a, b in RANGE_BANDS_M}}
    aps = [by_class[n][f"ap_{d:g}m"] for n in CLASS_GROUPS for d in AP_THRESHOLDS_M
           if by_class[n][f"ap_{d:g}m"] is not None]
    return {**overall, "by_class": by_class, "map": round(float(np.mean(aps)), 4) if aps else None,
            "threshold": threshold_record(threshold), "targets": targets_block(windows, threshold, steps_s, modes),
            "targets_by_threshold": targets_by_threshold(windows, steps_s, modes)}


#: Score thresholds the target sets are also reported at: the curve around the operating point, so a
#: reader sees what another threshold would trade (the operating point itself stays the node's).
SWEEP_THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7)


def targets_by_threshold(windows: list[WindowAgents], steps_s: np.ndarray, modes: int) -> dict:
    """Recall and precision (2 m and LET) of the target sets at each of SWEEP_THRESHOLDS."""
    keys = ("recall_2m", "precision_2m", "let_recall", "let_precision", "matched")
    return {f"{t:g}": {name: {k: row[k] for k in keys if k in row}
                       for name, row in targets_block(windows, t, steps_s, modes, with_ap=False).items()}
            for t in SWEEP_THRESHOLDS}


def operating_point_by_visibility(windows: list[WindowAgents], threshold: Threshold, steps_s: np.ndarray,
                                  modes: int) -> dict:
    """Recall at 2 m of *all* present agents in range, by their rendered visible share (nuScenes' bins).

    This is the one place low-visibility agents are scored rather than ignored: it shows what the
    model does with partly hidden agents. Empty where the data carries no rendered visibility.
    """
    if not any(np.isfinite(w.true_visibility).any() for w in windows):
        return {}
    out = {}
    for lo, hi in VISIBILITY_BINS:
        def in_bin(w: WindowAgents, lo: float = lo, hi: float = hi) -> np.ndarray:
            return (w.true_visibility >= lo) & (w.true_visibility < hi)

        widened = [WindowAgents(**{**vars(w), "in_scope": (w.in_scope | w.ignore) & in_bin(w),
                                   "ignore": (w.in_scope | w.ignore) & ~in_bin(w)}) for w in windows]
        result = operating_point(widened, threshold, steps_s, modes)
        out[f"{int(lo * 100)}-{min(int(hi * 100), 100)}%"] = {k: result[k] for k in ("true_agents", "recall_2m",
                                                                                    "let_recall")}
    return out


#: The sets the project's agent targets are stated in: name, class group, radius (m).
TARGET_SETS = (("car_30m", 0, NEAR_RADIUS_M[0]), ("pedestrian_20m", 1, NEAR_RADIUS_M[1]))


def group_within(windows: list[WindowAgents], threshold: Threshold, steps_s: np.ndarray, modes: int, group: int,
                 metres: float, start: float = 0.0) -> dict:
    """``operating_point`` of one class group's agents from ``start`` to ``metres`` from the ego: its ground
    truth in scope there, its detections there (other groups' detections and unmatched ones outside are
    neither right nor wrong)."""
    def keep(w: WindowAgents) -> np.ndarray:
        distance = np.linalg.norm(w.true_position, axis=1)
        return (distance >= start) & (distance < metres) & (groups_of(w.true_label) == group)

    subset = [WindowAgents(**{**vars(w), "score": np.where(groups_of(w.label) == group, w.score, -1.0)})
              for w in windows]
    return operating_point(subset, threshold, steps_s, modes, keep, (start, metres))


def targets_block(windows: list[WindowAgents], threshold: Threshold, steps_s: np.ndarray, modes: int,
                  with_ap: bool = True) -> dict:
    """The numbers the project's agent targets are stated in (TARGET_SETS): cars (incl. trucks, buses) within
    30 m and pedestrians within 20 m, among agents in scope (visible share ≥ the evaluation's threshold).
    ``with_ap=False`` leaves AP out: it does not depend on the threshold, so a sweep need not redo it."""
    out = {}
    for name, group, metres in TARGET_SETS:
        result = group_within(windows, threshold, steps_s, modes, group, metres)
        ap = average_precision(windows, group, 2.0, (0.0, metres)) if with_ap else None  # threshold-free
        out[name] = {**{k: result[k] for k in ("true_agents", "matched", "recall_2m", "precision_2m", "let_recall",
                                               "let_precision")}, "ap_2m": None if ap is None else round(ap, 4)}
    if windows and all(w.true_in_view is not None for w in windows):
        out["car_30m_cut_by_image_edge"] = cut_car_recall(windows, threshold)
    return out


def cut_car_recall(windows: list[WindowAgents], threshold: Threshold) -> dict:
    """Of the cars within 30 m in scope, those whose box centre is outside every camera's image (visible,
    so in scope, but cut by the image edge): how many the operating point finds. Matching runs against
    every car within 30 m, as for ``car_30m``, so a detection of the in-view car beside a cut one stays
    that car's; then only the cut cars' matches are counted. Recall only: no false positive belongs to
    such a subset."""
    total = matched = let_matched = 0
    for w in windows:
        near_car = (np.linalg.norm(w.true_position, axis=1) < 30.0) & (groups_of(w.true_label) == 0)
        cut = w.in_scope & near_car & ~w.true_in_view
        if not cut.any():
            continue
        cars = WindowAgents(**{**vars(w), "in_scope": w.in_scope & near_car,
                               "ignore": w.ignore | (w.in_scope & ~near_car)})
        keep = reported(w, threshold) & (groups_of(w.label) == 0)
        total += int(cut.sum())
        matched += sum(bool(cut[t]) for _, t in operating_matches(cars, keep, let=False)[0])
        let_matched += sum(bool(cut[t]) for _, t in operating_matches(cars, keep, let=True)[0])

    def ratio(a: int) -> float | None:
        return round(a / total, 4) if total else None

    return {"true_agents": total, "matched": matched, "recall_2m": ratio(matched), "let_recall": ratio(let_matched),
            "precision_2m": None, "let_precision": None, "ap_2m": None}


def baseline_scores(windows: list[WindowAgents], threshold: Threshold, steps_s: np.ndarray) -> dict:
    """Each oracle baseline (ground-truth past) on the agents the model matched at 2 m, and on every agent
    in scope (with perfect detection, so its EPA is its share of agents forecast within 2 m)."""
    names = sorted({name for w in windows for name in w.baselines})
    out = {}
    for name in names:
        same, every = ForecastScores(steps_s, 1), ForecastScores(steps_s, 1)
        total = hits = 0
        for w in windows:
            paths = w.baselines[name]
            pairs, _ = operating_matches(w, reported(w, threshold), let=False)
            for _, t in pairs:
                if np.isfinite(paths[t]).all():
                    same.add(paths[t], w.true_future[t], w.true_future_valid[t])
            for t in np.flatnonzero(w.in_scope):
                total += 1
                if np.isfinite(paths[t]).all():
                    hits += every.add(paths[t], w.true_future[t], w.true_future_valid[t])
        out[name] = {"same_agents": {**same.summary(), "note": "on the agents the model matched at 2 m"},
                     "all_agents": {**every.summary(), "epa": round(hits / total, 4) if total else None,
                                    "note": "every agent in scope, perfect detection"}}
    return out
