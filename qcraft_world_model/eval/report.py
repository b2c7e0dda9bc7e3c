"""The evaluation report: Markdown with tables, and the pictures people look at first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from qcraft_world_model.eval.drawing import draw_bev, draw_ground_paths, label_strip
from qcraft_world_model.eval.evaluate import Examples


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a Markdown table ("–" when missing)."""
    return "–" if value is None else f"{value:.{digits}f}"


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
        for position, paths in zip(item["pred_position"], item["pred_paths"]):
            centre = (int(pixels / 2 - position[1] * scale), int(pixels / 2 - position[0] * scale))
            cv2.circle(bev, centre, 4, (255, 255, 255), 1)
            for k, path in enumerate(paths):
                points = np.stack([pixels / 2 - path[:, 1] * scale, pixels / 2 - path[:, 0] * scale], -1).astype(int)
                shade = 255 if k == 0 else 140
                cv2.polylines(bev, [np.vstack([centre, points])], False, (shade, shade, shade), 1, cv2.LINE_AA)
        tiles.append(bev)
    if not tiles:
        return np.zeros((10, 10, 3), np.uint8)
    picture = np.hstack(tiles)
    caption = "ground truth (colour: boxes at t0, lines: next 3 s) vs predicted agents (white circles) and " \
              "paths (white: most likely, grey: others), within 30 m and in view"
    return np.vstack([label_strip(caption, picture.shape[1]), picture])


def camera_paths_picture(examples: Examples, camera, t0: int = 15, scale: int = 3) -> np.ndarray:  # noqa: ANN001
    """Per example: the newest camera frame with the real next 3 s of each scored agent (green) and the
    most likely predicted path of each reported agent (orange), drawn on the ground plane."""
    tiles = []
    for window, item in zip(examples.windows, examples.bev):
        frame = window[0, -1].transpose(1, 2, 0)
        canvas = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        agents, valid = item["agents"], item["valid"]
        real = [agents[t0:, a, :2][valid[t0:, a]] for a in item["truth"]]
        draw_ground_paths(canvas, camera, real, (80, 230, 80), scale, 2)
        predicted = [np.vstack([position, paths[0]]) for position, paths in zip(item["pred_position"],
                                                                                item["pred_paths"])]
        draw_ground_paths(canvas, camera, predicted, (255, 150, 30), scale, 2)
        tiles.append(canvas)
    if not tiles:
        return np.zeros((10, 10, 3), np.uint8)
    picture = np.hstack(tiles)
    caption = "newest frame; green: real next 3 s of agents in view, orange: most likely predicted path"
    return np.vstack([label_strip(caption, picture.shape[1]), picture])


def metrics_picture(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = result["data"]["future_frames_s"]
    model, copy = result["model"]["frames"], result["baselines"]["copy_last_frame"]["frames"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(seconds, model["psnr"], "o-", label="model")
    axes[0].plot(seconds, copy["psnr"], "s--", label="copy last frame")
    axes[0].set(title="future frames: PSNR (dB)", xlabel="seconds ahead")
    axes[1].plot(seconds, model["ssim"], "o-", label="model")
    axes[1].plot(seconds, copy["ssim"], "s--", label="copy last frame")
    axes[1].set(title="future frames: SSIM", xlabel="seconds ahead")
    horizons = ["1s", "2s", "3s"]
    agents = result["model"]["agents"]
    cv = result["baselines"]["constant_velocity"]["agents"]
    x = np.arange(len(horizons))
    for offset, (name, values) in enumerate((("model minFDE_1", agents["minFDE_1"]),
                                             ("model minFDE_3", agents["minFDE_3"]),
                                             ("const. velocity", cv["minFDE_1"]))):
        heights = [values.get(h) or 0.0 for h in horizons]
        axes[2].bar(x + (offset - 1) * 0.27, heights, width=0.27, label=name)
    axes[2].set_xticks(x, horizons)
    axes[2].set(title=f"agent final displacement (m), {agents['matched']} matched agents", xlabel="horizon")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def write_report(out: Path, result: dict[str, Any], examples: Examples) -> Path:
    """report.md, metrics.json, frames.png, bev.png, metrics.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    seconds = result["data"]["future_frames_s"]
    cv2.imwrite(str(out / "frames.png"), cv2.cvtColor(frames_picture(examples, seconds), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out / "bev.png"), cv2.cvtColor(bev_picture(examples), cv2.COLOR_RGB2BGR))
    metrics_picture(result, out / "metrics.png")

    model, base = result["model"], result["baselines"]
    agents, cv, cv_all = model["agents"], base["constant_velocity"]["agents"], \
        base["constant_velocity_all_agents"]["agents"]
    lines = [f"# Evaluation: {model['preset']} on {result['data']['root']} ({result['data']['clips']} clips, "
             f"split {result['data']['split']})", "",
             "## Future frames", "", *frames_table(result), "",
             "![frames](frames.png)", "",
             f"## Agents ({result['data']['agents']})", "",
             f"Ground-truth agents: {agents['true_agents']}; detections: {agents['detections']}; "
             f"matched within 2 m: {agents['matched']}.", "",
             "| | recall@2m | precision@2m | minADE_1 1/2/3 s | minFDE_1 1/2/3 s | minFDE_3 1/2/3 s | "
             "miss rate (k=3) | scene accuracy |", "|---|---|---|---|---|---|---|---|"]

    def row(name: str, a: dict[str, Any]) -> str:
        triple = lambda key: " / ".join(fmt(a[key].get(h)) for h in ("1s", "2s", "3s"))  # noqa: E731
        return (f"| {name} | {fmt(a['recall_2m'])} | {fmt(a['precision_2m'])} | {triple('minADE_1')} | "
                f"{triple('minFDE_1')} | {triple('minFDE_3')} | {fmt(a['miss_rate_3'])} | "
                f"{fmt(a['scene_accuracy'])} |")

    lines += [row("model", agents), row(f"constant velocity (same {cv['matched']} agents)", cv),
              row(f"constant velocity (all {cv_all['matched']} agents)", cv_all), "",
              "![bird's-eye view](bev.png)", "", "![metrics](metrics.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def live_offline_table(result: dict[str, Any]) -> str:
    """Live (recorded from the node) next to offline (the model in-process) on the same windows, Markdown."""
    live, offline = result["live"]["model"], result.get("offline", {}).get("model")
    rows = [(f"PSNR +{t:g} s (dB)", live["frames"]["psnr"][i], offline and offline["frames"]["psnr"][i], 3)
            for i, t in enumerate(result["live"]["data"]["future_frames_s"])]
    for key, label in (("recall_2m", "recall@2m"), ("precision_2m", "precision@2m")):
        rows.append((label, live["agents"][key], offline and offline["agents"][key], 3))
    for k in (1, 3):
        rows.append((f"minFDE_{k} @3 s (m)", live["agents"][f"minFDE_{k}"]["3s"],
                     offline and offline["agents"][f"minFDE_{k}"]["3s"], 3))
    rows.append(("agents matched", live["agents"]["matched"], offline and offline["agents"]["matched"], 0))
    coverage = result["coverage"]
    lines = [f"{coverage['predicted_live']} of {coverage['windows']} evaluation windows were predicted live "
             f"({', '.join(coverage['backends'])}); both columns score exactly those.", "",
             "| metric | live (replay) | offline | live − offline |", "|---|---|---|---|"]
    for label, a, b, digits in rows:
        difference = "-" if a is None or b is None else f"{a - b:+.{max(digits, 3)}f}"
        lines.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {difference} |")
    return "\n".join(lines) + "\n"
