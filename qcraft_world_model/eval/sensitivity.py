"""Per-layer INT8 sensitivity: which transformer linear costs how much accuracy when quantized.

Each row quantizes one linear alone (PT2E, the same X86 quantizer and
calibration as the deployed plan; everything else FP32) and measures on held-out
windows how far the outputs move from the FP32 model's:

- ``transformer_rel_l2``: relative L2 of the transformer's tokens and anchors;
- ``psnr_drop_db``: the mean drop of frame PSNR against the *real* future, per horizon;
- ``path_shift_m``: on the agent-grid cells where the FP32 model sees an agent
  (heat map > 0.5), the mean distance between the FP32 and INT8 endpoints of the
  most likely path there.
  This compares the same agents, which the minFDE of two separately matched
  sets cannot (a model that finds one more agent moves minFDE by more than
  any quantization error).

The "all" row quantizes every linear: the deployed plan's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from qcraft_world_model.eval.metrics import psnr
from qcraft_world_model.quant.plan import PrecisionPlan
from qcraft_world_model.runtime.mixed import PlannedWorldModel


@dataclass(frozen=True)
class EvalWindow:
    """A held-out window, with the parts every row reuses."""

    stem_tokens: torch.Tensor
    newest: torch.Tensor
    previous: torch.Tensor
    future: torch.Tensor  # (1, C, horizons, 3, H, W) in [0, 1]


def eval_windows(model: nn.Module, source: str, count: int) -> list[EvalWindow]:
    """The first ``count`` held-out clips of a dataset or bag, with the FP32 stem tokens computed once."""
    from qcraft_world_model.data.clip_tensors import ClipTensors

    data = ClipTensors.load(source, model.config, max_clips=count)
    windows = []
    with torch.no_grad():
        for i in range(len(data)):
            sample = data.batch(torch.tensor([i]))
            windows.append(EvalWindow(model.stem(sample.window), sample.window[:, :, -1], sample.window[:, :, -2],
                                      sample.future))
    return windows


def quantize_linears(transformer: nn.Module, latents: Sequence[torch.Tensor],
                     only: str | None = None) -> torch.fx.GraphModule:
    """PT2E INT8 of ``transformer``: every linear, or only the module named ``only``."""
    from qcraft_world_model.quant.pt2e import quantize_pt2e, x86_quantizer

    return quantize_pt2e(transformer, latents, x86_quantizer(only))


def linear_names(transformer: nn.Module) -> list[str]:
    """The transformer's linears, in execution order (the INT8 candidates)."""
    return [name for name, module in transformer.named_modules() if isinstance(module, nn.Linear)]


def _outputs(model: PlannedWorldModel, windows: Sequence[EvalWindow]) -> list:
    with torch.no_grad():
        return [model.forward_window(w.stem_tokens, w.newest, w.previous) for w in windows]


def _transformer_outputs(transformer: nn.Module, latents: Sequence[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([torch.cat([part.flatten() for part in transformer(latent)]) for latent in latents])


def _path_endpoints(output) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001 - WorldModelOutput
    """Per cell of batch item 0's agent grid: (heat-map probability (N,), endpoint displacement of the
    most likely path (N, 2)); comparing them cell by cell compares the same agents."""
    agents = output.agents
    heat = agents.heatmap[0].float().sigmoid().amax(1).flatten()  # (C*h*w,)
    modes = agents.mode_logits.shape[2]
    paths = agents.paths[0].float()  # (C, K*P*2, h, w)
    cams, _, h, w = paths.shape
    paths = paths.view(cams, modes, -1, 2, h, w)[:, :, -1]  # (C, K, 2, h, w): the last point
    best = agents.mode_logits[0].argmax(1)  # (C, h, w)
    end = torch.gather(paths, 1, best[:, None, None].expand(-1, 1, 2, -1, -1))[:, 0]  # (C, 2, h, w)
    return heat, end.permute(0, 2, 3, 1).reshape(-1, 2)


def layer_sensitivity(model: nn.Module, calibration: Sequence[torch.Tensor], windows: Sequence[EvalWindow],
                      layers: Sequence[str] | None = None) -> list[dict]:
    """One row per linear (quantized alone), then the row with all of them; see the module docstring.

    ``calibration``: transformer inputs (latents) for the activation ranges.
    """
    reference = PlannedWorldModel(model, PrecisionPlan())
    with torch.no_grad():
        latents = [reference.temporal(w.stem_tokens) for w in windows]
    exact_tokens = _transformer_outputs(reference.transformer, latents)
    exact = _outputs(reference, windows)
    exact_psnr = torch.stack([psnr(o.frames, w.future)[0].mean(0) for o, w in zip(exact, windows)]).mean(0)
    rows = []
    for name in [*(layers if layers is not None else linear_names(reference.transformer)), None]:
        candidate = PlannedWorldModel(model, PrecisionPlan())
        candidate.transformer = quantize_linears(candidate.transformer, calibration, only=name)
        tokens = _transformer_outputs(candidate.transformer, latents)
        outputs = _outputs(candidate, windows)
        quant_psnr = torch.stack([psnr(o.frames, w.future)[0].mean(0) for o, w in zip(outputs, windows)]).mean(0)
        shifts = []
        for fp, q in zip(exact, outputs):
            fp_exist, fp_end = _path_endpoints(fp)
            _, q_end = _path_endpoints(q)
            keep = fp_exist > 0.5
            shifts += (fp_end[keep] - q_end[keep]).norm(dim=-1).tolist()
        rows.append({"layer": name or "all", "transformer_rel_l2": float((tokens - exact_tokens).norm()
                                                                          / exact_tokens.norm()),
                     "psnr_drop_db": (exact_psnr - quant_psnr).tolist(),
                     "path_shift_m": sum(shifts) / len(shifts) if shifts else None, "agents": len(shifts)})
    return rows


def sensitivity_markdown(rows: Sequence[dict], horizons_s: Sequence[float]) -> str:
    """The table for docs and reports, most sensitive layer first (the "all" row last)."""
    head = ("| INT8 layer | transformer rel L2 | PSNR drop (dB) " + " / ".join(f"+{h:g}s" for h in horizons_s)
            + " | path endpoint shift (m) |\n|---|---|---|---|\n")
    single = sorted((r for r in rows if r["layer"] != "all"), key=lambda r: -r["transformer_rel_l2"])
    body = []
    for row in [*single, *(r for r in rows if r["layer"] == "all")]:
        shift = "-" if row["path_shift_m"] is None else f"{row['path_shift_m']:.3f} ({row['agents']} agents)"
        body.append(f"| {row['layer']} | {row['transformer_rel_l2']:.2e} | "
                    + " / ".join(f"{d:+.3f}" for d in row["psnr_drop_db"]) + f" | {shift} |")
    return head + "\n".join(body) + "\n"
