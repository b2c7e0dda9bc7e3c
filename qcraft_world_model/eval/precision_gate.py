"""The accuracy gate of a precision plan: its metrics next to FP32's, each within a relative tolerance.

Frame PSNR per horizon and the agents' minFDE at 3 s are compared as issue 5
asks. minFDE is computed on whichever agents each model matched, so a model
that finds one agent more or less moves it by more than any rounding; the
same-agent comparison is the sensitivity table's path shift (quant/sensitivity.py).
"""

from __future__ import annotations

from typing import Any

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
    for k in (1, 3):
        rows.append(_row(f"minFDE_{k} @3s", fp32["model"]["agents"][f"minFDE_{k}"]["3s"],
                         planned["model"]["agents"][f"minFDE_{k}"]["3s"], tolerance))
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
