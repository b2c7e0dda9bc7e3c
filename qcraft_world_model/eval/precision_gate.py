"""The accuracy gate of a precision plan: its metrics next to FP32's, each within a relative tolerance.

Frame PSNR per horizon, the detection metrics (car LET recall/precision and AP@2m within
30 m, mAP), EPA and the agents' minFDE at 3 s are compared. minFDE is computed on whichever
agents each model matched, so a model that finds one agent more or less moves it by more
than any rounding; the same-agent comparison is the sensitivity table's path shift
(eval/sensitivity.py), taken on the FP32 model's agents.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qcraft_world_model.model.agent_decode import MotionPrior, OperatingPoint

#: Relative difference to FP32 a planned model may show (issue 5: 0.5 %).
TOLERANCE = 0.005


def _row(metric: str, fp32: float | None, planned: float | None, tolerance: float) -> dict[str, Any]:
    if fp32 is None or planned is None:
        return {"metric": metric, "fp32": fp32, "planned": planned, "relative": None, "within": None}
    if not fp32:  # no relative difference to a zero: equal or not
        return {"metric": metric, "fp32": fp32, "planned": planned, "relative": None, "within": planned == fp32}
    relative = (planned - fp32) / abs(fp32)
    return {"metric": metric, "fp32": fp32, "planned": planned, "relative": relative,
            "within": abs(relative) <= tolerance}


def precision_gate(fp32: dict[str, Any], planned: dict[str, Any], tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Compare two ``evaluate`` results (same data); ``passed`` when every comparable metric is within."""
    rows = [_row(f"PSNR +{t:g}s", a, b, tolerance) for t, a, b in
            zip(fp32["data"]["future_frames_s"], fp32["model"]["frames"]["psnr"], planned["model"]["frames"]["psnr"])]
    a, b = fp32["model"]["agents"], planned["model"]["agents"]
    for key in ("let_recall", "let_precision", "ap_2m"):
        rows.append(_row(f"cars 30 m {key}", a["targets"]["car_30m"][key], b["targets"]["car_30m"][key], tolerance))
    rows.append(_row("mAP", a["map"], b["map"], tolerance))
    rows.append(_row("EPA", a["epa"], b["epa"], tolerance))
    for key in ("minFDE_1", "minFDE_K"):
        rows.append(_row(f"{key} @3s", a[key]["3s"], b[key]["3s"], tolerance))
    matched = (fp32["model"]["agents"]["matched"], planned["model"]["agents"]["matched"])
    return {"tolerance": tolerance, "rows": rows, "matched_agents": {"fp32": matched[0], "planned": matched[1]},
            "passed": all(row["within"] is not False for row in rows)}


def gate_markdown(gate: dict[str, Any], precision: str) -> str:
    """The gate as a Markdown table."""
    lines = [f"| metric | fp32 | {precision} | relative | within {gate['tolerance']:.1%} |", "|---|---|---|---|---|"]
    for row in gate["rows"]:
        if row["relative"] is None:
            lines.append(f"| {row['metric']} | {row['fp32']} | {row['planned']} | - | - |")
            continue
        lines.append(f"| {row['metric']} | {row['fp32']:.3f} | {row['planned']:.3f} | {row['relative']:+.2%} | "
                     f"{'yes' if row['within'] else '**no**'} |")
    matched = gate["matched_agents"]
    lines.append(f"\nminFDE is over the agents each model matched: {matched['fp32']} (fp32) vs "
                 f"{matched['planned']} ({precision}).")
    return "\n".join(lines) + "\n"


def gate_against_fp32(model, planned: dict[str, Any], data: str | Path, precision: str, folder: str | Path, *,  # noqa: ANN001
                      reference: str | Path | None = None, max_clips: int | None = None,
                      calibration: str | Path | None = None, sensitivity: bool = False, sensitivity_windows: int = 64,
                      say: Callable[[str], None] = print, prior: MotionPrior = MotionPrior(), every: int = 1,
                      operating: OperatingPoint = OperatingPoint()) -> tuple[dict[str, Any], str]:
    """``qcraft-wm evaluate --precision P``'s gate: ``model`` (FP32, from ``folder``) scored on the same
    ``data`` next to ``planned`` (its evaluation under plan ``precision``), and for an INT8 plan the
    per-layer sensitivity table when the gate misses (or ``sensitivity``). A QAT model is judged against
    the FP32 model it was fine-tuned from (``reference``, a folder), not its own weights. INT8 calibrates
    on ``calibration`` (a clip dataset or bag), default the folder's stored calibration, as the node uses
    it. Returns the gate (with ``sensitivity`` rows when run) and its Markdown; ``say`` gets each table
    as it is ready. ``prior``, ``every`` and ``operating``: decode, pick clips and report agents as ``planned``
    was (its motion prior, its spread of clips, its operating point), so that the two differ by the plan alone."""
    from qcraft_world_model.eval.evaluate import evaluate_clips
    from qcraft_world_model.runtime.model_folder import load_model

    reference_model = load_model(reference) if reference else model
    fp32, _ = evaluate_clips(reference_model, data, max_clips=max_clips, examples=0, prior=prior, every=every,
                             operating=operating)
    gate = precision_gate(fp32, planned)
    table = gate_markdown(gate, precision)
    say(table)
    if (not gate["passed"] or sensitivity) and "int8" in precision:
        from qcraft_world_model.data.clip_tensors import calibration_windows
        from qcraft_world_model.eval.sensitivity import eval_windows, layer_sensitivity, sensitivity_markdown
        from qcraft_world_model.quant.pt2e import transformer_latents
        from qcraft_world_model.runtime.model_folder import load_int8_calibration

        if calibration is not None:
            latents = transformer_latents(model, calibration_windows(calibration, model.config))
        else:
            latents = load_int8_calibration(folder, model, precision).latents
        windows = eval_windows(model, data, sensitivity_windows)
        rows = layer_sensitivity(model, latents, windows)
        gate["sensitivity"] = rows
        markdown = sensitivity_markdown(rows, fp32["data"]["future_frames_s"])
        say(f"per-layer INT8 sensitivity on {len(windows)} held-out windows:\n{markdown}")
        if not gate["passed"]:
            first = [row["layer"] for row in sorted(rows, key=lambda row: -row["transformer_rel_l2"])
                     if row["layer"] != "all"][:2]
            say(f"to leave the most sensitive linears in floating point: qcraft-wm calibrate --model {folder} "
                f"--data TRAINING_CLIPS --keep-float {','.join(first)} (then evaluate again)")
        table += f"\n## Per-layer INT8 sensitivity ({len(windows)} held-out windows)\n\n{markdown}"
    return gate, table
