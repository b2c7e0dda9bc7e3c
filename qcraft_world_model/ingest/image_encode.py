"""uint8 arrays → ``sensor_msgs/Image`` for the output side (predicted frames).

The message class is passed in, so the same helper fills rclpy messages (the
node) and rosbags dataclasses (bag writers) without importing either.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

ImageT = TypeVar("ImageT")

# Channels per encoding we write; the model produces RGB, tests also use mono.
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def image_fields(array: np.ndarray, encoding: str = "rgb8") -> dict[str, Any]:
    """The ``Image`` fields (all but ``header``) describing a packed uint8 array.

    ``array`` is (H, W) for mono8 or (H, W, C) with C matching ``encoding``.
    """
    if encoding not in _CHANNELS:
        raise ValueError(f"cannot write encoding {encoding!r}; use one of {', '.join(_CHANNELS)}")
    if array.dtype != np.uint8:
        raise ValueError(f"image array must be uint8, got {array.dtype}")
    channels = _CHANNELS[encoding]
    expected_ndim = 2 if channels == 1 else 3
    if array.ndim == 3 and channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise ValueError(f"array of shape {array.shape} does not hold {encoding} pixels")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"image array of shape {array.shape} is empty")
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": width * channels,
        "data": np.ascontiguousarray(array).reshape(-1),
    }


def to_image_msg(array: np.ndarray, header: Any, image_cls: type[ImageT],
                 encoding: str = "rgb8") -> ImageT:
    """Build an ``image_cls`` (rclpy or rosbags ``sensor_msgs/Image``) from ``array``."""
    fields = image_fields(array, encoding)
    if _is_rclpy_message(image_cls):
        # rclpy's uint8[] setter copies fastest from bytes (a numpy array would
        # be walked element by element).
        fields["data"] = fields["data"].tobytes()
    return image_cls(header=header, **fields)


def _is_rclpy_message(cls: type) -> bool:
    """rclpy message classes are made by rosidl_generator_py's ``Metaclass_<Name>``."""
    return type(cls).__name__.startswith("Metaclass_")
