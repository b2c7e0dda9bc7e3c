"""The world model with a precision plan applied: each part in its dtype, casts only at the seams."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from qcraft_world_model.model.world_model import WorldModel, WorldModelOutput
from qcraft_world_model.quant.plan import PrecisionPlan


class PlannedWorldModel(nn.Module):
    """Same calls as WorldModel (``forward``, ``stem``, ``forward_window``, ``decode_frames``, ``config``),
    planned precision.

    INT8 parts are replaced by their PT2E-quantized graph (calibrated on
    ``calibration`` windows), optionally compiled with Inductor, which is what
    turns the quantize/dequantize pairs into INT8 kernels.
    """

    def __init__(self, model: WorldModel, plan: PrecisionPlan, calibration: Iterable[torch.Tensor] = (),
                 compile_int8: bool = True, latents: list[torch.Tensor] | None = None,
                 keep_float: Sequence[str] = ()) -> None:
        """``calibration``: input windows; or ``latents``: the transformer inputs they give, computed once
        and stored with the model (``model_folder.INT8_CALIBRATION_FILE``). ``keep_float``: transformer
        linears an INT8 plan leaves in floating point.

        INT8 ranges are calibrated on the fp32 encoder's latents whatever the plan runs around the
        transformer: one calibration serves a bf16 host and an fp32 one (a bf16 encoder's latents
        differ from them by bf16 rounding, 2^-8 relative), as post-training quantization is
        calibrated on the float model's activations."""
        super().__init__()
        model = copy.deepcopy(model).eval()
        self.config, self.plan = model.config, plan
        self.keep_float = tuple(keep_float) if plan.transformer == "int8" else ()
        if plan.transformer == "int8" and latents is None:
            from qcraft_world_model.quant.pt2e import transformer_latents

            latents = transformer_latents(model, calibration)
        self.stem_part = model.stem.to(plan.dtype("stem"))
        self.temporal = model.temporal.to(plan.dtype("temporal"))
        self.frame_decoder = model.frame_decoder.to(plan.dtype("frame_decoder"))
        self.agent_head = model.agent_head.to(plan.dtype("agent_head"))
        self.transformer: nn.Module = model.transformer
        if plan.transformer == "int8":
            from qcraft_world_model.quant.pt2e import quantize_pt2e

            if not latents:
                raise ValueError("an INT8 plan needs calibration windows")
            quantized = quantize_pt2e(model.transformer.float(), latents, keep_float=keep_float)
            self.transformer = torch.compile(quantized) if compile_int8 else quantized
        else:
            self.transformer = model.transformer.to(plan.dtype("transformer"))

    def stem(self, frames: torch.Tensor) -> torch.Tensor:
        return self.stem_part(frames)

    def forward_window(self, stem_tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor,
                       frames: bool = True) -> WorldModelOutput:
        latent = self.temporal(stem_tokens.to(self.plan.dtype("temporal")))
        tokens, anchors = self.transformer(latent.to(self.plan.dtype("transformer")))
        return self.heads(tokens, anchors, newest, previous, frames)

    def heads(self, tokens: torch.Tensor, anchors: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor,
              frames: bool = True) -> WorldModelOutput:
        """Frame decoder (unless ``frames`` is False) and agent head in their planned dtypes; outputs in fp32."""
        b, c = newest.shape[:2]
        per_camera = tokens.reshape(b * c, self.config.tokens_per_camera, -1)
        agents = self.agent_head(per_camera.to(self.plan.dtype("agent_head")), newest.reshape(b * c, *newest.shape[2:]),
                                 previous.reshape(b * c, *previous.shape[2:]), c)
        for name, value in vars(agents).items():
            setattr(agents, name, value.float())
        if not frames:
            return WorldModelOutput(frames=None, agents=agents, tokens=per_camera)
        return WorldModelOutput(frames=self.decode_frames(per_camera, newest, previous), agents=agents)

    def decode_frames(self, tokens: torch.Tensor, newest: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Future frames (fp32) from an agents-only window's per-camera ``tokens``, the decoder in its
        planned dtype (WorldModel.decode_frames)."""
        b, c = newest.shape[:2]
        predicted = self.frame_decoder(tokens.to(self.plan.dtype("frame_decoder")),
                                       newest.reshape(b * c, *newest.shape[2:]),
                                       previous.reshape(b * c, *previous.shape[2:]))
        return predicted.float().view(b, c, *predicted.shape[1:])

    def forward(self, window: torch.Tensor) -> WorldModelOutput:
        return self.forward_window(self.stem(window), window[:, :, -1], window[:, :, -2])


def planned_model(model: WorldModel, precision: str, calibration_data: str | None = None, windows: int = 32,
                  device: str = "cpu", folder: str | Path | None = None) -> PlannedWorldModel:
    """``model`` under a named precision plan. INT8 calibrates on the first ``windows`` clips of
    ``calibration_data`` (a dataset or bag) when given, else on the calibration stored in the model
    ``folder`` (``qcraft-wm calibrate``), so the node needs no dataset. The linears kept in floating
    point are the folder's stored choice (none without a folder or its calibration)."""
    from qcraft_world_model.runtime.model_folder import load_int8_calibration, stored_keep_float

    plan = PrecisionPlan.named(precision, device)
    if plan.transformer != "int8":
        return PlannedWorldModel(model, plan)
    if calibration_data is not None:
        from qcraft_world_model.data.clip_tensors import calibration_windows

        keep = stored_keep_float(folder, model, precision) if folder is not None else ()
        return PlannedWorldModel(model, plan, calibration_windows(calibration_data, model.config, windows),
                                 keep_float=keep)
    if folder is None:
        raise ValueError("INT8 needs calibration: a clip dataset, or a model folder calibrated with "
                         "qcraft-wm calibrate")
    stored = load_int8_calibration(folder, model, precision)
    return PlannedWorldModel(model, plan, latents=stored.latents, keep_float=stored.keep_float)


def calibration_latents(model: WorldModel, precision: str, windows: Iterable[torch.Tensor],
                        device: str = "cpu") -> list[torch.Tensor]:
    """The transformer inputs ``windows`` give in the fp32 model: what ``precision``'s INT8 part
    calibrates on (see PlannedWorldModel)."""
    from qcraft_world_model.quant.pt2e import transformer_latents

    if PrecisionPlan.named(precision, device).transformer != "int8":
        raise ValueError(f"precision {precision!r} has no INT8 part to calibrate")
    return transformer_latents(model.eval(), windows)
