"""Camera messages → uint8 RGB arrays at the model's resolution.

Works on anything shaped like ``sensor_msgs/Image`` (``height width encoding
is_bigendian step data``) or ``sensor_msgs/CompressedImage`` (``format data``):
rclpy messages, rosbags dataclasses, or test doubles. No rclpy import.

Every malformed input raises :class:`ImageDecodeError` (a ``ValueError``) whose
message names the field at fault, so the node can log it, count it per camera
and move on. Colour conversions reuse rosbags-image's encoding table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from rosbags.image.image import ImageError, convert_color, to_cvtype

ResizeMode = Literal["stretch", "center_crop"]

#: Raw encodings the decoder accepts (sensor_msgs/image_encodings names).
SUPPORTED_ENCODINGS: tuple[str, ...] = (
    "rgb8", "bgr8", "rgba8", "bgra8", "mono8",
    "rgb16", "bgr16", "rgba16", "bgra16", "mono16",
    "yuv422", "uyvy", "yuv422_yuy2", "yuyv",
    "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
)

#: Compressed formats the decoder accepts, recognised by their magic bytes.
SUPPORTED_COMPRESSED: tuple[str, ...] = ("jpeg", "png")

_MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}

# Formats image_transport plugins write that are not still images we decode.
_REFUSED_FORMAT_WORDS = ("compresseddepth", "h264", "h265", "hevc", "av1", "vp8", "vp9", "theora")


class ImageDecodeError(ValueError):
    """A camera message could not be turned into an image."""


class UnsupportedEncodingError(ImageDecodeError):
    """The message is well formed but uses an encoding we do not decode."""


class MalformedImageError(ImageDecodeError):
    """The message contradicts itself (sizes, step, data length) or is corrupt."""


@dataclass(frozen=True)
class TargetSize:
    """Output resolution and how to reach it from the camera's aspect ratio."""

    width: int
    height: int
    mode: ResizeMode = "stretch"

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"target size must be positive, got {self.width}x{self.height}")
        if self.mode not in ("stretch", "center_crop"):
            raise ValueError(f"resize mode must be 'stretch' or 'center_crop', got {self.mode!r}")


def decode_image(msg: Any, size: TargetSize | None = None) -> np.ndarray:
    """Decode a raw ``sensor_msgs/Image`` into an (H, W, 3) uint8 RGB array.

    Row padding (``step`` larger than a packed row) is honoured; 16-bit images
    are scaled to 8 bits; ``size`` resizes the result (None keeps the camera's).
    """
    encoding = str(msg.encoding)
    if encoding not in SUPPORTED_ENCODINGS:
        raise UnsupportedEncodingError(
            f"encoding {encoding!r} is not supported; use one of {', '.join(SUPPORTED_ENCODINGS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise MalformedImageError(f"image size {width}x{height} (width x height) is empty")

    depth_bits, _, typestr, channels = to_cvtype(encoding)
    pixel_bytes = depth_bits // 8 * channels
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise MalformedImageError(
            f"step {step} is smaller than one row: width {width} x {pixel_bytes} bytes per pixel "
            f"({encoding}) = {row_bytes}")
    data = _as_bytes(msg.data)
    if len(data) < step * height:
        raise MalformedImageError(
            f"data holds {len(data)} bytes, fewer than step {step} x height {height} = {step * height}"
            " (truncated message)")

    dtype = np.dtype(typestr)
    if int(msg.is_bigendian) != (sys.byteorder == "big") and dtype.itemsize > 1:
        dtype = dtype.newbyteorder()
    # A strided view skips the row padding without copying.
    shape = (height, width, channels) if channels > 1 else (height, width)
    strides = (step, pixel_bytes, dtype.itemsize) if channels > 1 else (step, pixel_bytes)
    pixels = np.ndarray(shape, dtype=dtype, buffer=data, strides=strides)
    pixels = np.ascontiguousarray(pixels).astype(dtype.newbyteorder("="), copy=False)

    try:
        rgb = convert_color(pixels, encoding, "rgb8")
    except (ImageError, cv2.error) as err:
        raise MalformedImageError(f"cannot convert {encoding} to rgb8: {err}") from err
    return _fit(np.ascontiguousarray(rgb, dtype=np.uint8), size)


def decode_compressed_image(msg: Any, size: TargetSize | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) into (H, W, 3) uint8 RGB.

    The codec is recognised from the data's magic bytes; ``format`` is only
    checked for codecs we refuse (depth images, video streams), because camera
    drivers fill it inconsistently ("jpeg", "rgb8; jpeg compressed bgr8", "").
    """
    fmt = str(getattr(msg, "format", ""))
    lowered = fmt.lower().replace(" ", "")
    for word in _REFUSED_FORMAT_WORDS:
        if word in lowered:
            raise UnsupportedEncodingError(
                f"compressed format {fmt!r} is not supported; use one of {', '.join(SUPPORTED_COMPRESSED)}")
    data = _as_bytes(msg.data)
    if len(data) == 0:
        raise MalformedImageError("compressed image data is empty")
    codec = next((name for magic, name in _MAGIC.items() if data[:len(magic)] == magic), None)
    if codec is None:
        raise UnsupportedEncodingError(
            f"compressed data (format {fmt!r}) starts with {data[:4].hex()}, not a "
            f"{' or '.join(SUPPORTED_COMPRESSED)} signature")

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MalformedImageError(f"{codec} data ({len(data)} bytes) is corrupt: the decoder rejected it")
    return _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)


def decode_any(msg: Any, size: TargetSize | None = None) -> np.ndarray:
    """Decode either message type, told apart by CompressedImage's ``format`` field."""
    if hasattr(msg, "format"):
        return decode_compressed_image(msg, size)
    return decode_image(msg, size)


def _as_bytes(data: Any) -> memoryview:
    """A zero-copy byte view of a message's ``data`` (bytes, array.array, numpy, list)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return memoryview(data).cast("B")
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")
    try:
        return memoryview(data).cast("B")  # array.array('B') from rclpy
    except TypeError:
        return memoryview(bytes(data))  # a plain list of ints


def _fit(rgb: np.ndarray, size: TargetSize | None) -> np.ndarray:
    """Crop and/or resize to the target size (area filter when shrinking)."""
    if size is None:
        return rgb
    height, width = rgb.shape[:2]
    if size.mode == "center_crop":
        target_aspect = size.width / size.height
        if width / height > target_aspect:
            crop_w = max(1, round(height * target_aspect))
            x0 = (width - crop_w) // 2
            rgb = rgb[:, x0:x0 + crop_w]
        else:
            crop_h = max(1, round(width / target_aspect))
            y0 = (height - crop_h) // 2
            rgb = rgb[y0:y0 + crop_h]
        height, width = rgb.shape[:2]
    if (width, height) == (size.width, size.height):
        return np.ascontiguousarray(rgb)
    shrinking = size.width < width and size.height < height
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size.width, size.height), interpolation=interp)
