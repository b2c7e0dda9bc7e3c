"""``qcraft-wm demo``: the main job on a fresh machine.

1. Camera ingest: a three-camera bag with the faults fleet bags have (corrupt
   JPEG, truncated image, duplicate stamp, dropped frames, a camera that dies)
   goes through the node's decoder, ring windows and aligner; the table of what
   happened is printed and a contact sheet of the decoded frames is saved.
2. The world model: a drive on Berlin Adlershof (a map it never trained on) is
   simulated into a bag, the shipped model predicts from it, and its scores are
   printed next to copy-last-frame and constant velocity, with pictures.
The live node joins with issue 6.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from qcraft_world_model.data.test_pattern import write_test_pattern_bag
from qcraft_world_model.eval.ingest_check import check_bag, format_report

TILE = (160, 120)  # width, height of one camera tile in the contact sheet


def contact_sheet(frames: dict[str, dict[int, np.ndarray]], cameras: list[str], rows: int = 4) -> np.ndarray:
    """A grid of decoded frames: one column per camera, ``rows`` instants spread over the bag.

    A camera with no frame near an instant gets a dark tile marked "missing".
    """
    stamps = sorted({stamp for per_cam in frames.values() for stamp in per_cam})
    picks = [stamps[round(i * (len(stamps) - 1) / max(1, rows - 1))] for i in range(rows)] if stamps else []
    width, height = TILE
    sheet = np.full((28 + rows * (height + 18), len(cameras) * width, 3), 24, np.uint8)
    for col, cam in enumerate(cameras):
        cv2.putText(sheet, cam, (col * width + 4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1)
    for row, stamp in enumerate(picks):
        y0 = 28 + row * (height + 18)
        for col, cam in enumerate(cameras):
            near = [s for s in frames.get(cam, {}) if abs(s - stamp) <= 50_000_000]
            x0 = col * width
            if near:
                tile = cv2.resize(frames[cam][min(near, key=lambda s: abs(s - stamp))], TILE)
                sheet[y0:y0 + height, x0:x0 + width] = tile
            else:
                cv2.putText(sheet, "missing", (x0 + 40, y0 + height // 2), cv2.FONT_HERSHEY_SIMPLEX,
                            0.5, (90, 90, 255), 1)
        cv2.putText(sheet, f"t = {(stamp - picks[0]) / 1e9:.1f} s", (4, y0 + height + 13),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 200, 200), 1)
    return sheet


def run_demo(out: Path, json_path: Path | None = None) -> int:
    """Write the faulty three-camera bag, check it, print the table, save the picture."""
    out.mkdir(parents=True, exist_ok=True)
    bag = write_test_pattern_bag(out / "faulty_rig.mcap", overwrite=True)
    frames: dict[str, dict[int, np.ndarray]] = {}

    def keep(camera: str, stamp: int, rgb: np.ndarray) -> None:
        frames.setdefault(camera, {})[stamp] = rgb

    report = check_bag(bag, on_frame=keep)
    print(format_report(report))
    picture = out / "ingest_contact_sheet.png"
    cameras = [cam.name for cam in report.cameras]
    cv2.imwrite(str(picture), cv2.cvtColor(contact_sheet(frames, cameras), cv2.COLOR_RGB2BGR))
    print(f"contact sheet of the decoded frames: {picture}")
    results = {"ingest": report.to_dict(), "model": _model_part(out)}
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _model_part(out: Path) -> dict | None:
    """Predict on a freshly simulated held-out drive with the shipped model; print the scores."""
    from qcraft_world_model.data.scene_bag import SceneBagConfig, write_scene_bag
    from qcraft_world_model.eval.evaluate import evaluate_clips
    from qcraft_world_model.eval.report import write_report
    from qcraft_world_model.train.model_card import default_model
    from qcraft_world_model.train.trainer import load_model

    try:
        folder = default_model("lite")
    except FileNotFoundError as err:
        print(f"world model part skipped: {err}")
        return None
    bag = out / "berlin_drive"
    print(f"\nsimulating a 12 s drive on Berlin Adlershof (held out from training) into {bag} ...")
    write_scene_bag(bag, SceneBagConfig(map="berlin_adlershof", seed=100_123, seconds=12.0), overwrite=True)
    result, examples = evaluate_clips(load_model(folder), bag, examples=3)
    report = write_report(out / "model", result, examples)
    frames, copy = result["model"]["frames"]["psnr"], result["baselines"]["copy_last_frame"]["frames"]["psnr"]
    seconds = result["data"]["future_frames_s"]
    agents, cv = result["model"]["agents"], result["baselines"]["constant_velocity"]["agents"]
    print(f"model {folder} on {result['data']['clips']} windows of the drive:")
    print("  future frames PSNR (dB), model vs copy-last-frame: "
          + ", ".join(f"+{t:g}s {m:.1f}/{c:.1f}" for t, m, c in zip(seconds, frames, copy)))
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"  agents within 30 m in view: {agents['true_agents']}, recall@2m {fmt(agents['recall_2m'])}, "
          f"precision@2m {fmt(agents['precision_2m'])}; minFDE@3s model {fmt(agents['minFDE_1']['3s'])} m vs "
          f"constant velocity {fmt(cv['minFDE_1']['3s'])} m on the same {agents['matched']} agents")
    print(f"  report with pictures: {report} (frames.png, bev.png)")
    return result
