"""The one model-folder module: a WorldModel ↔ ``model.safetensors`` + ``config.json`` (written by
training and by the benchmarks' random-weight models, read by the node, evaluation, export and
benchmarks), the stored INT8 calibration, motion prior and operating point, and where the shipped models live."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from qcraft_world_model.model.agent_decode import MotionPrior, OperatingPoint
from qcraft_world_model.model.config import ModelConfigError, WorldModelConfig
from qcraft_world_model.model.world_model import WorldModel


class ModelFolderError(ValueError):
    """A model folder that cannot be used; the message names the file and, where one is, the field."""


def model_dirs() -> list[Path]:
    """Where shipped models live: the source tree, then installed share/ folders (pip, colcon)."""
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    return [Path(__file__).resolve().parents[2] / "models",
            *(Path(p) / "share" / "qcraft_world_model" / "models" for p in prefixes)]


#: The shipped model the node, the demo and the CLI use when no model folder is given: lite-wide
#: (256x128) since it doubled lite's car AP@2m on the held-out map at 83-89 ms a window (docs/model.md).
DEFAULT_PRESET = "lite-wide"


def default_model(preset: str | None = None) -> Path:
    """The folder of the shipped model of a preset (default: DEFAULT_PRESET)."""
    preset = preset or DEFAULT_PRESET
    for folder in model_dirs():
        if (folder / preset / "model.safetensors").is_file():
            return folder / preset
    raise FileNotFoundError(f"no shipped {preset!r} model found in: {', '.join(map(str, model_dirs()))}")


def read_model_config(folder: str | Path) -> WorldModelConfig:
    """The model configuration of a folder's ``config.json``, checked field by field, without building
    anything: callers compare it with what they will feed the model before paying for weights."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"model folder {folder} has no config.json")
    try:
        document = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("model"), dict):
        raise ModelFolderError(f"{path} has no \"model\" mapping (the model's fields)")
    try:
        return WorldModelConfig.from_dict(document["model"])
    except (ModelConfigError, TypeError) as err:
        raise ModelFolderError(f"{path}: model.{err}") from err


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> WorldModel:
    """A trained model from ``model.safetensors`` + ``config.json``, in eval mode.

    Refuses (ModelFolderError) a config that fails its checks, weights that do not fit it, and
    weights that are not finite: a NaN weight would otherwise publish NaN agents.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_model_config(folder)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"model folder {folder} has no model.safetensors")
    model = WorldModel(config)
    try:
        state = load_file(str(weights), device=str(device))
        model.load_state_dict(state)
    except Exception as err:  # safetensors raises its own error type for corrupt files
        raise ModelFolderError(f"{weights} does not load into a {config.preset} model: "
                               f"{type(err).__name__}: {err}") from err
    broken = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise ModelFolderError(f"{weights} holds non-finite weights in {len(broken)} tensor(s), e.g. {broken[0]}")
    return model.to(device).eval()


def save_model(out: str | Path, model: WorldModel, config: WorldModelConfig, summary: dict[str, Any]) -> None:
    """The deployable artefacts: weights (safetensors) and the model config + training summary."""
    from safetensors.torch import save_file

    from qcraft_world_model.quant.modelopt_qat import QUANTIZERS_FILE, split_state

    out = Path(out)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # A QAT model's quantizer ranges go to their own file: model.safetensors stays an ordinary model.
    plain, quantizers = split_state(state)
    save_file(plain, str(out / "model.safetensors"), metadata={"preset": config.preset})
    if quantizers:
        save_file(quantizers, str(out / QUANTIZERS_FILE), metadata={"preset": config.preset})
    (out / "config.json").write_text(json.dumps({"model": config.to_dict(), "training": summary}, indent=2) + "\n")


#: What the INT8 plan calibrates on, stored with the model: the transformer inputs (latents) of the
#: first training windows under that plan. Computed once (``qcraft-wm calibrate``), so the node and
#: the benchmarks run ``mixed-int8`` from the folder alone; tied to the weights by their hash.
INT8_CALIBRATION_FILE = "int8_calibration.safetensors"


class Int8Calibration(NamedTuple):
    """What a model folder stores for its INT8 plan: the calibration latents, and the transformer
    linears the plan keeps in floating point (``qcraft-wm calibrate --keep-float``; none by default)."""

    latents: list[torch.Tensor]
    keep_float: tuple[str, ...] = ()


def save_int8_calibration(folder: str | Path, model: WorldModel, precision: str, latents: list[torch.Tensor],
                          source: str, keep_float: Sequence[str] = ()) -> Path:
    """Write ``latents`` ((1, tokens, dim) each) with the weights' hash, the plan, where they came from
    and the linears the plan keeps in floating point (``keep_float``, checked against the model)."""
    from qcraft_world_model.quant.pt2e import check_keep_float

    try:
        keep_float = check_keep_float(model.transformer, keep_float)
    except ValueError as err:  # a misspelt name: refused before anything is written
        raise ModelFolderError(f"cannot keep in floating point {err}") from err
    from safetensors.torch import save_file

    from qcraft_world_model.runtime.onnx_export import weights_hash

    path = Path(folder) / INT8_CALIBRATION_FILE
    tensors = {"latents": torch.cat([latent.detach().float().cpu() for latent in latents])}
    tmp = path.with_name(path.name + ".tmp")
    # "encoder": the latents are the fp32 encoder's (runtime/mixed.py); files without the field (before
    # session 6) came from the planned bf16 encoder, within bf16 rounding of these, and still load.
    save_file(tensors, str(tmp), metadata={"weights": weights_hash(model), "precision": precision, "source": source,
                                          "windows": str(len(latents)), "encoder": "fp32",
                                          "keep_float": ",".join(keep_float)})
    os.chmod(tmp, 0o644)  # shipped with the model: readable like its weights
    os.replace(tmp, path)
    return path


def load_int8_calibration(folder: str | Path, model: WorldModel, precision: str) -> Int8Calibration:
    """The stored calibration; ModelFolderError when missing, made for other weights or plan, or naming
    a layer the model does not have."""
    from safetensors import safe_open

    from qcraft_world_model.quant.pt2e import check_keep_float
    from qcraft_world_model.runtime.onnx_export import weights_hash

    path = Path(folder) / INT8_CALIBRATION_FILE
    if not path.is_file():
        raise ModelFolderError(f"{folder} has no {INT8_CALIBRATION_FILE}: INT8 needs calibration "
                               f"(qcraft-wm calibrate --model {folder} --data CLIPS)")
    try:
        with safe_open(str(path), "pt") as handle:
            metadata, latents = handle.metadata() or {}, handle.get_tensor("latents")
    except Exception as err:  # safetensors' own error types for a corrupt file
        raise ModelFolderError(f"{path} does not load: {type(err).__name__}: {err}") from err
    if metadata.get("weights") != weights_hash(model):
        raise ModelFolderError(f"{path} was made for other weights: run qcraft-wm calibrate again")
    if metadata.get("precision") != precision:
        raise ModelFolderError(f"{path} calibrates plan {metadata.get('precision')!r}, not {precision!r}")
    if latents.ndim != 3 or latents.shape[1:] != (model.config.tokens, model.config.dim) \
            or not torch.isfinite(latents).all():
        raise ModelFolderError(f"{path} holds latents of shape {tuple(latents.shape)}, not (N, "
                               f"{model.config.tokens}, {model.config.dim}) finite values")
    keep_float = tuple(name for name in metadata.get("keep_float", "").split(",") if name)
    try:
        check_keep_float(model.transformer, keep_float)
    except ValueError as err:
        raise ModelFolderError(f"{path} keeps in floating point {err}") from err
    return Int8Calibration(list(latents.split(1)), keep_float)


def stored_keep_float(folder: str | Path, model: WorldModel, precision: str = "mixed-int8") -> tuple[str, ...]:
    """The linears ``folder``'s INT8 plan keeps in floating point; none when it stores no calibration
    (an INT8 graph calibrated elsewhere, e.g. on ``--calibration`` data, follows the folder's choice)."""
    if not (Path(folder) / INT8_CALIBRATION_FILE).is_file():
        return ()
    return load_int8_calibration(folder, model, precision).keep_float


#: The decoder's per-group trust in the head's motion (``agent_decode.MotionPrior``), fitted on training
#: clips by ``qcraft-wm fit-motion`` and tied to the weights by their hash. A folder without it decodes
#: the head's motion as it is.
MOTION_PRIOR_FILE = "motion_prior.json"
MOTION_PRIOR_FORMAT = "qcraft-wm-motion-prior/1"


def _save_decoding(path: Path, model: WorldModel, document: dict[str, Any]) -> Path:
    """Write one of the decoder's fitted settings next to the weights, keyed to them: ``document`` with
    the model's export key. The key covers the config as well as the weights: the same weights under
    another ``path_steps`` or ``agent_motion`` decode other motion and other scores."""
    from qcraft_world_model.runtime.onnx_export import export_key

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**document, "model": export_key(model)}, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)  # shipped with the model: readable like its weights
    os.replace(tmp, path)
    return path


def _load_decoding(path: Path, model: WorldModel, form: str, what: str, refit: str, field: str
                   ) -> dict[str, Any] | None:
    """The per-group values (a mapping of each of ``CLASS_GROUPS``) under ``field`` of a file
    ``_save_decoding`` wrote; None where there is no file. ModelFolderError for a file that is not one, or that was fitted to other
    weights or config (``refit``: the command that fits it again)."""
    from qcraft_world_model.model.detection import CLASS_GROUPS
    from qcraft_world_model.runtime.onnx_export import export_key

    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(document, dict) or document.get("format") != form:
        raise ModelFolderError(f"{path} is not {what} (format {form!r})")
    if document.get("model") != export_key(model):
        raise ModelFolderError(f"{path} was fitted to other weights or another config.json: fit it again ({refit})")
    values = document.get(field)
    if not isinstance(values, dict) or set(values) != set(CLASS_GROUPS):
        raise ModelFolderError(f"{path}: \"{field}\" must map each of {', '.join(CLASS_GROUPS)}")
    return values


def save_motion_prior(folder: str | Path, model: WorldModel, prior: MotionPrior, record: dict[str, Any]) -> Path:
    """Write ``prior`` with the model's export key and ``record`` (how it was fitted) next to the weights."""
    from qcraft_world_model.model.detection import CLASS_GROUPS

    return _save_decoding(Path(folder) / MOTION_PRIOR_FILE, model,
                          {"format": MOTION_PRIOR_FORMAT, "gain": dict(zip(CLASS_GROUPS, prior.gain)), "fit": record})


def load_motion_prior(folder: str | Path, model: WorldModel) -> MotionPrior:
    """The folder's motion prior; the identity (the head's motion as it is) where it stores none.
    ModelFolderError for a file that is not one, or that was fitted to other weights or config."""
    gains = _load_decoding(Path(folder) / MOTION_PRIOR_FILE, model, MOTION_PRIOR_FORMAT, "a motion prior",
                           f"qcraft-wm fit-motion --model {folder} --data TRAINING_CLIPS --overwrite", "gain")
    if gains is None:
        return MotionPrior()
    from qcraft_world_model.model.detection import CLASS_GROUPS

    try:
        return MotionPrior(tuple(gains[name] for name in CLASS_GROUPS))
    except ValueError as err:
        raise ModelFolderError(f"{Path(folder) / MOTION_PRIOR_FILE}: {err}") from err


#: The score each class group is reported from (``agent_decode.OperatingPoint``), chosen on validation
#: clips by ``qcraft-wm fit-operating-point`` and tied to the weights. A folder without it reports every
#: group from ``agent_decode.DEFAULT_EXISTENCE_THRESHOLD``.
OPERATING_POINT_FILE = "operating_point.json"
OPERATING_POINT_FORMAT = "qcraft-wm-operating-point/1"


def save_operating_point(folder: str | Path, model: WorldModel, operating: OperatingPoint,
                         record: dict[str, Any]) -> Path:
    """Write ``operating`` with the model's export key and ``record`` (how it was chosen) next to the weights."""
    return _save_decoding(Path(folder) / OPERATING_POINT_FILE, model,
                          {"format": OPERATING_POINT_FORMAT, "threshold": operating.as_dict(), "fit": record})


def load_operating_point(folder: str | Path, model: WorldModel) -> OperatingPoint | None:
    """The folder's operating point; None where it stores none. ModelFolderError for a file that is not
    one, or that was chosen for other weights or config."""
    thresholds = _load_decoding(Path(folder) / OPERATING_POINT_FILE, model, OPERATING_POINT_FORMAT,
                                "an operating point", f"qcraft-wm fit-operating-point --model {folder} "
                                "--data VALIDATION_CLIPS --overwrite", "threshold")
    if thresholds is None:
        return None
    try:
        return OperatingPoint.from_dict(thresholds)
    except (KeyError, TypeError) as err:
        raise ModelFolderError(f"{Path(folder) / OPERATING_POINT_FILE}: each group needs \"within_m\", \"threshold\" "
                               f"and \"beyond\" ({type(err).__name__}: {err})") from err
    except ValueError as err:
        raise ModelFolderError(f"{Path(folder) / OPERATING_POINT_FILE}: {err}") from err
