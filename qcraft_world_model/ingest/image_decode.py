"""Camera messages → uint8 RGB arrays at the model's resolution.

Works on anything shaped like ``sensor_msgs/Image`` (``height width encoding
is_bigendian step data``) or ``sensor_msgs/CompressedImage`` (``format data``):
rclpy messages, rosbags dataclasses, or test doubles. No rclpy import.

Every malformed input raises :class:`ImageDecodeError` (a ``ValueError``) whose
message names the field at fault, so the node can log it, count it per camera
and move on. Colour conversions reuse rosbags-image's encoding table.
"""

from __future__ import annotations

import struct
import sys
import zlib
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


#: Largest image (width x height) decoded by default: 4096 x 4096. A camera message declaring more is
#: refused before any pixel is allocated — a 600-byte JPEG header can declare 65500 x 65500 (12 GB of
#: pixels; OpenCV's own limit turns that into an exception, and anything under it into a stall).
DEFAULT_MAX_PIXELS = 4096 * 4096


class ImageDecodeError(ValueError):
    """A camera message could not be turned into an image."""


class UnsupportedEncodingError(ImageDecodeError):
    """The message is well formed but uses an encoding we do not decode."""


class MalformedImageError(ImageDecodeError):
    """The message contradicts itself (sizes, step, data length) or is corrupt."""


class ImageTooLargeError(ImageDecodeError):
    """The message declares more pixels than the camera may send (a decompression bomb, or a wrong camera)."""


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{what} declares {width}x{height} = {width * height} pixels, more than the "
                                 f"{max_pixels} allowed (image.max_input_pixels)")


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


def decode_image(msg: Any, size: TargetSize | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a raw ``sensor_msgs/Image`` into an (H, W, 3) uint8 RGB array.

    Row padding (``step`` larger than a packed row) is honoured; 16-bit images
    are scaled to 8 bits; ``size`` resizes the result (None keeps the camera's);
    more than ``max_pixels`` is refused.
    """
    encoding = str(msg.encoding)
    if encoding not in SUPPORTED_ENCODINGS:
        raise UnsupportedEncodingError(
            f"encoding {encoding!r} is not supported; use one of {', '.join(SUPPORTED_ENCODINGS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise MalformedImageError(f"image size {width}x{height} (width x height) is empty")
    _check_pixels(width, height, max_pixels, "image")

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


def decode_compressed_image(msg: Any, size: TargetSize | None = None,
                            max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) into (H, W, 3) uint8 RGB.

    The codec is recognised from the data's magic bytes; ``format`` is only
    checked for codecs we refuse (depth images, video streams), because camera
    drivers fill it inconsistently ("jpeg", "rgb8; jpeg compressed bgr8", "").
    The size the header declares is read first: more than ``max_pixels`` is
    refused without decoding, and a decoded image must have the declared size.
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

    width, height = declared_size(data, codec)
    if width <= 0 or height <= 0:
        raise MalformedImageError(f"{codec} header declares an empty image ({width}x{height})")
    _check_pixels(width, height, max_pixels, f"{codec} header")
    reduction = jpeg_reduction(width, height, size) if codec == "jpeg" else 1
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED_READ[reduction] | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as err:  # OpenCV's own limits and codec failures: the message is at fault, not us
        raise MalformedImageError(f"{codec} data ({len(data)} bytes) is corrupt: {err.err or err}") from err
    if bgr is None:
        raise MalformedImageError(f"{codec} data ({len(data)} bytes) is corrupt: the decoder rejected it")
    expected = (-(-height // reduction), -(-width // reduction))  # libjpeg's scaled size rounds up
    if bgr.shape[:2] != expected:
        raise MalformedImageError(f"{codec} decoded to {bgr.shape[1]}x{bgr.shape[0]}, its header says "
                                  f"{width}x{height}" + (f" (1/{reduction}: {expected[1]}x{expected[0]})"
                                                         if reduction > 1 else ""))
    return _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)


#: OpenCV's read flags for a JPEG decoded at 1/1, 1/2, 1/4, 1/8 of its size.
_REDUCED_READ = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}


def jpeg_reduction(width: int, height: int, size: TargetSize | None) -> int:
    """The largest of 8, 4, 2 (else 1) at which a ``width`` x ``height`` JPEG still covers ``size``.

    libjpeg can run its inverse DCT at 1/2, 1/4 or 1/8 scale, which skips most of the decode: a
    1920x1080 frame for a 256x128 model is decoded at 480x270 and area-resized from there, instead
    of decoding two million pixels to throw 98 % of them away. Each scaled pixel is the mean of its
    block (the DCT's DC term and a few more), so nothing is aliased; the reduced image is never
    smaller than the target (after a centre crop, where one is asked for), so the area resize still
    only shrinks.
    """
    if size is None:
        return 1
    crop_w, crop_h = _crop_size(width, height, size)
    for factor in (8, 4, 2):
        if crop_w // factor >= size.width and crop_h // factor >= size.height:
            return factor
    return 1


def declared_size(data: memoryview | bytes, codec: str) -> tuple[int, int]:
    """(width, height) a JPEG's frame header (SOFn) or a PNG's IHDR declares, read without decoding.

    Raises MalformedImageError when the header is missing or cut off.
    """
    if codec == "png":
        return _png_size(data)
    return _jpeg_size(data)


def _png_size(data: memoryview | bytes) -> tuple[int, int]:
    """Check every chunk of a PNG (length within the data, CRC) and return its IHDR's size.

    OpenCV's PNG reader allocates what a chunk's length field says before it finds the data
    short: a 2.4 KB PNG with one length rewritten took 3.8 GB here. A chunk that does not fit in
    the message, or whose checksum fails, is refused before OpenCV sees it.
    """
    data = bytes(data)
    end, i = len(data), 8
    size = None
    while i + 12 <= end:
        (length,), kind = struct.unpack(">I", data[i:i + 4]), data[i + 4:i + 8]
        if length > end - i - 12:
            raise MalformedImageError(f"png data ({end} bytes) is corrupt: chunk {kind!r} at byte {i} claims "
                                      f"{length} bytes")
        body = data[i + 8:i + 8 + length]
        (crc,) = struct.unpack(">I", data[i + 8 + length:i + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise MalformedImageError(f"png data ({end} bytes) is corrupt: chunk {kind!r} at byte {i} fails its CRC")
        if size is None:
            if kind != b"IHDR" or length != 13:
                raise MalformedImageError(f"png data ({end} bytes) is corrupt: no IHDR header")
            size = struct.unpack(">II", body[:8])
        if kind == b"IEND":
            return size
        i += 12 + length
    raise MalformedImageError(f"png data ({end} bytes) is corrupt: cut off before its end (IEND)")


#: JPEG markers that start a frame header (SOF0-SOF15 except DHT C4, JPG C8 and DAC CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: memoryview | bytes) -> tuple[int, int]:
    """Walk the JPEG's marker segments up to the first frame header (ITU T.81, B.1.1)."""
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    i, end = 2, len(view)
    while i + 4 <= end:
        if view[i] != 0xFF:
            raise MalformedImageError(f"jpeg data ({end} bytes) is corrupt: no marker at byte {i}")
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        length = (view[i + 2] << 8) | view[i + 3]
        if length < 2:
            raise MalformedImageError(f"jpeg data ({end} bytes) is corrupt: segment length {length} at byte {i}")
        if marker in _JPEG_SOF:
            if i + 9 > end:
                break
            height = (view[i + 5] << 8) | view[i + 6]
            width = (view[i + 7] << 8) | view[i + 8]
            return width, height
        i += 2 + length
    raise MalformedImageError(f"jpeg data ({end} bytes) is corrupt: no frame header (SOF) before its image data")


def decode_any(msg: Any, size: TargetSize | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode either message type, told apart by CompressedImage's ``format`` field."""
    if hasattr(msg, "format"):
        return decode_compressed_image(msg, size, max_pixels)
    return decode_image(msg, size, max_pixels)


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


def _crop_size(width: int, height: int, size: TargetSize) -> tuple[int, int]:
    """(width, height) of the part of a ``width`` x ``height`` image that ``size`` keeps: all of it for
    "stretch", the centred region of the target's aspect for "center_crop"."""
    if size.mode != "center_crop":
        return width, height
    aspect = size.width / size.height
    if width / height > aspect:
        return max(1, round(height * aspect)), height
    return width, max(1, round(width / aspect))


def _fit(rgb: np.ndarray, size: TargetSize | None) -> np.ndarray:
    """Crop and/or resize to the target size (area filter when shrinking)."""
    if size is None:
        return rgb
    height, width = rgb.shape[:2]
    if size.mode == "center_crop":
        crop_w, crop_h = _crop_size(width, height, size)
        x0, y0 = (width - crop_w) // 2, (height - crop_h) // 2
        rgb = rgb[y0:y0 + crop_h, x0:x0 + crop_w]
        height, width = rgb.shape[:2]
    if (width, height) == (size.width, size.height):
        return np.ascontiguousarray(rgb)
    # Area filtering wherever neither side grows (a reduced JPEG decode can land exactly on one side).
    shrinking = size.width <= width and size.height <= height
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size.width, size.height), interpolation=interp)
