"""The evaluation report: Markdown with tables, and the pictures people look at first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from qcraft_world_model.data.drawing import draw_bev, draw_ground_paths, label_strip
from qcraft_world_model.eval.evaluate import Examples
from qcraft_world_model.model.geometry import box_corners


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a Markdown table ("–" when missing)."""
    return "–" if value is None else f"{value:.{digits}f}"


def threshold_text(threshold: float | dict[str, dict[str, float]]) -> str:
    """The evaluation's operating point in words: one score, or per class group within and beyond its radius."""
    if isinstance(threshold, dict):
        from qcraft_world_model.model.agent_decode import OperatingPoint

        return OperatingPoint.from_dict(threshold).describe()
    return fmt(threshold)


def frames_table(result: dict[str, Any]) -> list[str]:
    """Markdown rows: PSNR and SSIM per future step, model vs copy-last-frame."""
    seconds = result["data"]["future_frames_s"]
    frames, copy = result["model"]["frames"], result["baselines"]["copy_last_frame"]["frames"]
    return ["| seconds ahead | " + " | ".join(f"{s:g}" for s in seconds) + " |",
            "|---|" + "---|" * len(seconds),
            "| PSNR model (dB) | " + " | ".join(fmt(v) for v in frames["psnr"]) + " |",
            "| PSNR copy-last-frame | " + " | ".join(fmt(v) for v in copy["psnr"]) + " |",
            "| SSIM model | " + " | ".join(fmt(v, 3) for v in frames["ssim"]) + " |",
            "| SSIM copy-last-frame | " + " | ".join(fmt(v, 3) for v in copy["ssim"]) + " |"]


def frames_picture(examples: Examples, seconds: list[float], scale: int = 1) -> np.ndarray:
    """Per example: the newest input frame, then real (top) and predicted (bottom) future frames."""
    rows = []
    for window, true, pred in zip(examples.windows, examples.true_frames, examples.pred_frames):
        last = window[0, -1].transpose(1, 2, 0)
        blank = np.full_like(last, 20)
        real = [last] + [(f.transpose(1, 2, 0) * 255).astype(np.uint8) for f in true[0]]
        guess = [blank] + [(f.transpose(1, 2, 0) * 255).astype(np.uint8) for f in pred[0]]
        rows.append(np.vstack([np.hstack(real), np.hstack(guess)]))
        rows.append(np.full((6, rows[-1].shape[1], 3), 20, np.uint8))
    if not rows:
        return np.zeros((10, 10, 3), np.uint8)
    picture = np.vstack(rows)
    if scale > 1:
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    caption = "newest frame | real future " + " ".join(f"+{s:g}s" for s in seconds) + \
              "  (top: real, bottom: predicted)"
    return np.vstack([label_strip(caption, picture.shape[1]), picture])


def bev_picture(examples: Examples, t0: int = 15, pixels: int = 320) -> np.ndarray:
    tiles = []
    for item in examples.bev:
        truth = item["truth"]
        valid = np.zeros_like(item["valid"])
        valid[:, truth] = item["valid"][:, truth]
        bev = draw_bev(item["agents"], valid, item["size"], item["label"], t0, pixels=pixels)
        scale = pixels / 100.0  # draw_bev's default extent: 50 m each way
        pred = item["pred"]
        for position, paths, heading, size in zip(pred.position, pred.paths, pred.heading, pred.size):
            centre = np.array([pixels / 2 - position[1] * scale, pixels / 2 - position[0] * scale])
            corners = box_footprint(position, heading, size)
            outline = np.stack([pixels / 2 - corners[:, 1] * scale, pixels / 2 - corners[:, 0] * scale], -1)
            cv2.polylines(bev, [outline.astype(np.int32)], True, (255, 255, 255), 1, cv2.LINE_AA)
            for k, path in enumerate(paths):
                points = np.stack([pixels / 2 - path[:, 1] * scale, pixels / 2 - path[:, 0] * scale], -1)
                shade = 255 if k == 0 else 140
                cv2.polylines(bev, [np.vstack([centre, points]).astype(np.int32)], False, (shade, shade, shade), 1,
                              cv2.LINE_AA)
        tiles.append(bev)
    if not tiles:
        return np.zeros((10, 10, 3), np.uint8)
    picture = np.hstack(tiles)
    caption = "ground truth in scope (colour: boxes at t0, lines: next 3 s) vs predicted agents (white boxes) " \
              "and paths (white: most likely, grey: others)"
    return np.vstack([label_strip(caption, picture.shape[1]), picture])


def box_footprint(position: np.ndarray, heading: float, size: np.ndarray) -> np.ndarray:
    """(4, 2) ego-frame corners of a box's footprint, in order around it."""
    return box_corners(position, heading, size)[0, [0, 1, 3, 2], :2]


def camera_paths_picture(examples: Examples, t0: int = 15, scale: int = 3) -> np.ndarray:
    """Per example: the newest camera frame with the real next 3 s of each scored agent (green), and each
    reported agent's footprint box and most likely path (orange), drawn on the ground plane."""
    tiles = []
    for window, item, rig in zip(examples.windows, examples.bev, examples.cameras):
        camera = rig[0]
        frame = window[0, -1].transpose(1, 2, 0)
        canvas = np.ascontiguousarray(cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))
        agents, valid = item["agents"], item["valid"]
        real = [agents[t0:, a, :2][valid[t0:, a]] for a in item["truth"]]
        draw_ground_paths(canvas, camera, real, (80, 230, 80), scale, 2)
        pred = item["pred"]
        predicted = [np.vstack([position, paths[0]]) for position, paths in zip(pred.position, pred.paths)]
        boxes = [np.vstack([corners, corners[:1]]) for corners in
                 (box_footprint(p, h, z) for p, h, z in zip(pred.position, pred.heading, pred.size))]
        draw_ground_paths(canvas, camera, boxes, (255, 150, 30), scale, 1, endpoint=False)
        draw_ground_paths(canvas, camera, predicted, (255, 150, 30), scale, 2)
        tiles.append(canvas)
    if not tiles:
        return np.zeros((10, 10, 3), np.uint8)
    picture = np.hstack(tiles)
    caption = "newest frame; green: real next 3 s of agents in scope; orange: predicted footprints, most likely paths"
    return np.vstack([label_strip(caption, picture.shape[1]), picture])


def metrics_picture(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = result["data"]["future_frames_s"]
    model, copy = result["model"]["frames"], result["baselines"]["copy_last_frame"]["frames"]
    agents = result["model"]["agents"]
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    axes[0].plot(seconds, model["psnr"], "o-", label="model")
    axes[0].plot(seconds, copy["psnr"], "s--", label="copy last frame")
    axes[0].set(title="future frames: PSNR (dB)", xlabel="seconds ahead")
    axes[1].plot(seconds, model["ssim"], "o-", label="model")
    axes[1].plot(seconds, copy["ssim"], "s--", label="copy last frame")
    axes[1].set(title="future frames: SSIM", xlabel="seconds ahead")
    bands = list(agents["by_range"])
    for key, style in (("recall_2m", "o-"), ("let_recall", "s--"), ("precision_2m", "^:")):
        axes[2].plot(bands, [agents["by_range"][b][key] or 0.0 for b in bands], style, label=key)
    axes[2].set(title="detection by range (all classes)", xlabel="range (m)", ylim=(0, 1))
    horizons = ["1s", "2s", "3s"]
    cv = result["baselines"]["constant_velocity_instantaneous"]["same_agents"]
    own = result["baselines"]["constant_velocity_own_detections"]["agents"]
    x = np.arange(len(horizons))
    for offset, (name, values) in enumerate((("model minFDE_1", agents["minFDE_1"]),
                                             (f"model minFDE_{agents['K']}", agents["minFDE_K"]),
                                             ("CV oracle (instantaneous)", cv["minFDE_1"]),
                                             ("CV on own detections", own["minFDE_1"]))):
        heights = [values.get(h) or 0.0 for h in horizons]
        axes[3].bar(x + (offset - 1.5) * 0.2, heights, width=0.2, label=name)
    axes[3].set_xticks(x, horizons)
    axes[3].set(title=f"final displacement (m), {agents['matched']} matched agents", xlabel="horizon")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def agents_tables(result: dict[str, Any]) -> list[str]:
    """Markdown: the targets, detection by class and range, forecasting vs the baselines, EPA."""
    agents, base = result["model"]["agents"], result["baselines"]
    triple = lambda a, key: " / ".join(fmt(a[key].get(h)) for h in ("1s", "2s", "3s"))  # noqa: E731
    t = agents["targets"]
    lines = [f"Scope: {agents['filter']}.", "",
             "| target set | agents | recall@2m | precision@2m | LET recall | LET precision | AP@2m |",
             "|---|---|---|---|---|---|---|"]
    for name, row in t.items():
        lines.append(f"| {name} | {row['true_agents']} | {fmt(row['recall_2m'])} | {fmt(row['precision_2m'])} | "
                     f"{fmt(row['let_recall'])} | {fmt(row['let_precision'])} | {fmt(row['ap_2m'])} |")
    if agents.get("targets_by_threshold"):
        lines += ["", "Cars within 30 m at other score thresholds (the operating point above is "
                  f"{threshold_text(agents['threshold'])}): LET recall / LET precision", "",
                  "| score ≥ | " + " | ".join(agents["targets_by_threshold"]) + " |",
                  "|---|" + "---|" * len(agents["targets_by_threshold"]),
                  "| car_30m | " + " | ".join(f"{fmt(r['car_30m']['let_recall'])} / {fmt(r['car_30m']['let_precision'])}"
                                            for r in agents["targets_by_threshold"].values()) + " |"]
    lines += ["", f"mAP (3 groups x 0.5/1/2/4 m): {fmt(agents['map'], 3)}", "",
              "| class | range (m) | agents | AP 0.5/1/2/4 m | recall@2m | precision@2m | LET recall | ATE | AOE | AVE |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for cls, block in agents["by_class"].items():
        for band, row in [("all", block), *block["by_range"].items()]:
            aps = " / ".join(fmt(row.get(f"ap_{d}")) for d in ("0.5m", "1m", "2m", "4m"))
            lines.append(f"| {cls} | {band} | {row['true_agents']} | {aps} | {fmt(row['recall_2m'])} | "
                         f"{fmt(row['precision_2m'])} | {fmt(row['let_recall'])} | {fmt(row['ate'])} | "
                         f"{fmt(row['aoe'])} | {fmt(row['ave'])} |")
    if agents.get("by_visibility"):
        lines += ["", "| visible share | agents | recall@2m | LET recall |", "|---|---|---|---|"]
        for name, row in agents["by_visibility"].items():
            lines.append(f"| {name} | {row['true_agents']} | {fmt(row['recall_2m'])} | {fmt(row['let_recall'])} |")
    cv_i = base["constant_velocity_instantaneous"]
    cv_f = base["constant_velocity_finite_difference"]
    own = base["constant_velocity_own_detections"]["agents"]
    lines += ["", f"Forecasting on the {agents['matched']} agents the model matched at 2 m (K = {agents['K']}):", "",
              "| | minADE_1 1/2/3 s | minFDE_1 1/2/3 s | minFDE_K 1/2/3 s | miss rate K | EPA |",
              "|---|---|---|---|---|---|",
              f"| model | {triple(agents, 'minADE_1')} | {triple(agents, 'minFDE_1')} | {triple(agents, 'minFDE_K')} | "
              f"{fmt(agents['miss_rate_K'])} | {fmt(agents['epa'], 3)} |",
              f"| CV on the model's own detections (the head's velocity) | {triple(own, 'minADE_1')} | "
              f"{triple(own, 'minFDE_1')} | – | {fmt(own['miss_rate_K'])} | {fmt(own['epa'], 3)} |"]
    if "constant_velocity_own_tracks" in base:  # evaluate --tracks, on a bag
        tracks = base["constant_velocity_own_tracks"]
        lines.append(f"| CV on the model's own tracks ({fmt(100 * tracks['tracked_share'], 0)} % seen before) | "
                     f"{triple(tracks['agents'], 'minADE_1')} | {triple(tracks['agents'], 'minFDE_1')} | – | "
                     f"{fmt(tracks['agents']['miss_rate_K'])} | {fmt(tracks['agents']['epa'], 3)} |")
    for name, b in (("CV oracle, instantaneous velocity", cv_i), ("CV oracle, finite difference", cv_f)):
        same, every = b["same_agents"], b["all_agents"]
        lines.append(f"| {name} (same agents) | {triple(same, 'minADE_1')} | {triple(same, 'minFDE_1')} | – | "
                     f"{fmt(same['miss_rate_K'])} | – |")
        lines.append(f"| {name} (all {every['agents']} agents, perfect detection) | {triple(every, 'minADE_1')} | "
                     f"{triple(every, 'minFDE_1')} | – | {fmt(every['miss_rate_K'])} | {fmt(every['epa'], 3)} |")
    return lines


def write_report(out: Path, result: dict[str, Any], examples: Examples) -> Path:
    """report.md, metrics.json, frames.png, bev.png, camera.png, metrics.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    seconds = result["data"]["future_frames_s"]
    cv2.imwrite(str(out / "frames.png"), cv2.cvtColor(frames_picture(examples, seconds), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out / "bev.png"), cv2.cvtColor(bev_picture(examples), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out / "camera.png"), cv2.cvtColor(camera_paths_picture(examples), cv2.COLOR_RGB2BGR))
    metrics_picture(result, out / "metrics.png")
    model = result["model"]
    lines = [f"# Evaluation: {model['preset']} on {result['data']['root']} ({result['data']['clips']} clips, "
             f"split {result['data']['split']})", "",
             "## Future frames", "", *frames_table(result), "",
             "![frames](frames.png)", "",
             f"## Agents ({result['data']['agents']})", "", *agents_tables(result), "",
             "![camera view](camera.png)", "", "![bird's-eye view](bev.png)", "", "![metrics](metrics.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def evaluate_summary(result: dict[str, Any]) -> str:
    """Two lines of an ``evaluate`` result: frame PSNR per step next to copy-last-frame; the agents."""
    frames, copy = result["model"]["frames"]["psnr"], result["baselines"]["copy_last_frame"]["frames"]["psnr"]
    agents = result["model"]["agents"]
    cars = agents["targets"]["car_30m"]
    cv = result["baselines"]["constant_velocity_instantaneous"]["same_agents"]
    return ("PSNR model / copy-last per step: " + ", ".join(f"{m:.2f}/{c:.2f}" for m, c in zip(frames, copy)) + "\n"
            f"agents: cars within 30 m LET recall {cars['let_recall']} at precision {cars['let_precision']}, "
            f"AP@2m {cars['ap_2m']}; mAP {agents['map']}; EPA {agents['epa']}; minFDE_1/K@3s "
            f"{agents['minFDE_1']['3s']}/{agents['minFDE_K']['3s']} vs CV (oracle) {cv['minFDE_1']['3s']}")


def live_offline_table(result: dict[str, Any]) -> str:
    """Live (recorded from the node) next to offline (the model in-process) on the same windows, Markdown."""
    live, offline = result["live"]["model"], result.get("offline", {}).get("model")
    rows = [(f"PSNR +{t:g} s (dB)", live["frames"]["psnr"][i], offline and offline["frames"]["psnr"][i], 3)
            for i, t in enumerate(result["live"]["data"]["future_frames_s"])]
    for key, label in (("recall_2m", "recall@2m"), ("precision_2m", "precision@2m")):
        rows.append((label, live["agents"][key], offline and offline["agents"][key], 3))
    for key in ("minFDE_1", "minFDE_K"):
        rows.append((f"{key} @3 s (m)", live["agents"][key]["3s"], offline and offline["agents"][key]["3s"], 3))
    rows.append(("agents matched", live["agents"]["matched"], offline and offline["agents"]["matched"], 0))
    coverage = result["coverage"]
    lines = [f"{coverage['predicted_live']} of {coverage['windows']} evaluation windows were predicted live "
             f"({', '.join(coverage['backends'])}); both columns score exactly those. Live agents carry the "
             "node's tracked existence (history over successive windows), offline ones the single window's "
             "peak score, so detections near the threshold differ.", "",
             "| metric | live (replay) | offline | live − offline |", "|---|---|---|---|"]
    for label, a, b, digits in rows:
        difference = "-" if a is None or b is None else f"{a - b:+.{max(digits, 3)}f}"
        lines.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {difference} |")
    return "\n".join(lines) + "\n"
