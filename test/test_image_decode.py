"""Camera message → RGB array: every supported encoding, and each malformed input."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from qcraft_world_model.ingest import (
    MalformedImageError,
    TargetSize,
    UnsupportedEncodingError,
    decode_any,
    decode_compressed_image,
    decode_image,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)


def raw(pixels: np.ndarray, encoding: str, *, step: int | None = None, bigendian: int = 0,
        data: bytes | None = None) -> SimpleNamespace:
    height, width = pixels.shape[:2]
    packed = pixels.tobytes()
    row = len(packed) // height
    return SimpleNamespace(height=height, width=width, encoding=encoding, is_bigendian=bigendian,
                           step=row if step is None else step, data=packed if data is None else data)


def compressed(data: bytes, fmt: str = "jpeg") -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=data)


@pytest.mark.parametrize("encoding, pixels", [
    ("rgb8", RGB),
    ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])),
    ("bgra8", np.dstack([RGB[:, :, ::-1], np.full(RGB.shape[:2], 7, np.uint8)])),
])
def test_color_encodings_decode_to_the_same_rgb(encoding: str, pixels: np.ndarray) -> None:
    np.testing.assert_array_equal(decode_image(raw(np.ascontiguousarray(pixels), encoding)), RGB)


def test_mono8_is_replicated_to_three_channels() -> None:
    gray = RGB[:, :, 0].copy()
    out = decode_image(raw(gray, "mono8"))
    assert out.shape == (6, 10, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)


@pytest.mark.parametrize("bigendian", [0, 1])
def test_mono16_is_scaled_to_eight_bits_in_either_byte_order(bigendian: int) -> None:
    values = np.array([[0, 65535], [32896, 257]], dtype=np.uint16)
    stored = values.astype(">u2" if bigendian else "<u2")
    out = decode_image(raw(stored, "mono16", bigendian=bigendian))
    np.testing.assert_array_equal(out[:, :, 0], [[0, 255], [128, 1]])


@pytest.mark.parametrize("encoding, code", [
    ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2),
    ("yuv422", cv2.COLOR_YUV2RGB_UYVY),
])
def test_yuv422_matches_opencv(encoding: str, code: int) -> None:
    packed = RNG.integers(0, 256, (4, 8, 2), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(raw(packed, encoding)), cv2.cvtColor(packed, code))


def test_bayer_decodes_to_rgb_of_the_same_size() -> None:
    mosaic = RNG.integers(0, 256, (8, 8), dtype=np.uint8)
    assert decode_image(raw(mosaic, "bayer_rggb8")).shape == (8, 8, 3)


def test_row_padding_in_step_is_skipped() -> None:
    padded = np.zeros((6, 10 * 3 + 2), np.uint8)  # two bytes of padding per row
    padded[:, :30] = RGB.reshape(6, 30)
    msg = SimpleNamespace(height=6, width=10, encoding="rgb8", is_bigendian=0, step=32,
                          data=padded.tobytes())
    np.testing.assert_array_equal(decode_image(msg), RGB)


def test_resize_to_target_size() -> None:
    out = decode_image(raw(RGB, "rgb8"), TargetSize(width=5, height=3))
    assert out.shape == (3, 5, 3) and out.dtype == np.uint8


def test_center_crop_keeps_the_middle_of_a_wide_image() -> None:
    wide = np.zeros((4, 12, 3), np.uint8)
    wide[:, 4:8] = 200  # the centre square
    out = decode_image(raw(wide, "rgb8"), TargetSize(width=4, height=4, mode="center_crop"))
    assert (out == 200).all()


def test_jpeg_and_png_decode() -> None:
    bgr = cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)
    png = cv2.imencode(".png", bgr)[1].tobytes()
    np.testing.assert_array_equal(decode_compressed_image(compressed(png, "png")), RGB)
    smooth = np.full((16, 16, 3), (200, 100, 50), np.uint8)
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    out = decode_compressed_image(compressed(jpeg.tobytes(), "rgb8; jpeg compressed bgr8"))
    assert np.abs(out.astype(int) - smooth).max() <= 3


def test_a_full_hd_jpeg_is_decoded_at_a_quarter_and_matches_the_full_decode() -> None:
    """1920x1080 for a 256x128 model: libjpeg's 1/4-scale decode (480x270), then the area resize,
    gives what decoding every pixel and resizing gives, to within JPEG's own rounding."""
    from qcraft_world_model.ingest.image_decode import jpeg_reduction

    ys, xs = np.mgrid[0:1080, 0:1920]
    scene = np.dstack([(xs * 255 // 1919), (ys * 255 // 1079), ((xs // 40 + ys // 40) % 2) * 200 + 20])
    scene = scene.astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(scene, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    target = TargetSize(256, 128)
    assert jpeg_reduction(1920, 1080, target) == 4
    reduced = decode_compressed_image(compressed(jpeg.tobytes()), target)
    full = cv2.resize(cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), (256, 128),
                      interpolation=cv2.INTER_AREA)
    assert reduced.shape == (128, 256, 3) and reduced.dtype == np.uint8
    difference = np.abs(reduced.astype(int) - full.astype(int))
    assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 8, (difference.mean(), difference.max())


@pytest.mark.parametrize("width, height, target, factor", [
    (1920, 1080, TargetSize(256, 128), 4),  # 240x135 at 1/8 is narrower than 256
    (1280, 720, TargetSize(256, 128), 4),  # 320x180
    (2048, 1024, TargetSize(256, 128), 8),  # exactly 256x128
    (640, 480, TargetSize(256, 128), 2),
    (300, 200, TargetSize(256, 128), 1),
    (1920, 1080, None, 1),  # the camera's own size: every pixel
    (3840, 1080, TargetSize(256, 256, "center_crop"), 4),  # the 1080x1080 middle, 270 at 1/4
])
def test_jpeg_reduction_never_goes_below_the_target(width: int, height: int, target: TargetSize | None,
                                                    factor: int) -> None:
    from qcraft_world_model.ingest.image_decode import jpeg_reduction

    assert jpeg_reduction(width, height, target) == factor


@pytest.mark.parametrize("width, height, progressive", [(1921, 1081, 0), (1283, 723, 1), (1031, 517, 1)])
def test_odd_sized_and_progressive_jpegs_decode_reduced(width: int, height: int, progressive: int) -> None:
    """libjpeg rounds a scaled size up; the decoder's size check must agree, for baseline and progressive."""
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3)).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])
    assert ok
    assert decode_compressed_image(compressed(jpeg.tobytes()), TargetSize(256, 128)).shape == (128, 256, 3)


def test_a_reduced_decode_keeps_the_centre_crop_and_png_is_decoded_whole() -> None:
    wide = np.zeros((1080, 3840, 3), np.uint8)
    wide[:, 1380:2460] = 200  # the 1080-wide middle is bright, the sides dark
    ok, jpeg = cv2.imencode(".jpg", wide)
    out = decode_compressed_image(compressed(jpeg.tobytes()), TargetSize(256, 256, "center_crop"))
    assert out.shape == (256, 256, 3) and out[:, 8:-8].min() > 150
    ok, png = cv2.imencode(".png", wide[:540, :960])
    assert decode_compressed_image(compressed(png.tobytes(), "png"), TargetSize(64, 32)).shape == (32, 64, 3)


def test_decode_any_tells_the_two_message_types_apart() -> None:
    png = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))[1].tobytes()
    np.testing.assert_array_equal(decode_any(compressed(png, "png")), decode_any(raw(RGB, "rgb8")))


# --- malformed input: each raises an error that names the problem ----------------

def test_step_smaller_than_a_row_is_rejected() -> None:
    with pytest.raises(MalformedImageError, match=r"step 20 is smaller than one row"):
        decode_image(raw(RGB, "rgb8", step=20))


def test_truncated_data_is_rejected() -> None:
    with pytest.raises(MalformedImageError, match=r"data holds 100 bytes.*truncated"):
        decode_image(raw(RGB, "rgb8", data=RGB.tobytes()[:100]))


def test_unknown_encoding_is_rejected_with_the_supported_list() -> None:
    with pytest.raises(UnsupportedEncodingError, match=r"encoding '32FC1' is not supported; use one of rgb8"):
        decode_image(raw(RGB, "32FC1"))


@pytest.mark.parametrize("height, width", [(0, 10), (6, 0)])
def test_zero_size_is_rejected(height: int, width: int) -> None:
    msg = SimpleNamespace(height=height, width=width, encoding="rgb8", is_bigendian=0, step=30, data=b"")
    with pytest.raises(MalformedImageError, match=r"is empty"):
        decode_image(msg)


def test_corrupt_jpeg_is_rejected() -> None:
    jpeg = cv2.imencode(".jpg", RGB)[1].tobytes()
    broken = jpeg[:4] + b"\x00" * 40  # right signature, garbage body
    with pytest.raises(MalformedImageError, match=r"jpeg data \(44 bytes\) is corrupt"):
        decode_compressed_image(compressed(broken))


def test_empty_compressed_data_is_rejected() -> None:
    with pytest.raises(MalformedImageError, match=r"compressed image data is empty"):
        decode_compressed_image(compressed(b""))


def test_unknown_compressed_signature_is_rejected() -> None:
    with pytest.raises(UnsupportedEncodingError, match=r"starts with 00000001"):
        decode_compressed_image(compressed(b"\x00\x00\x00\x01gAAA", "jpeg"))


def test_depth_and_video_formats_are_refused_by_name() -> None:
    png = cv2.imencode(".png", RGB)[1].tobytes()
    with pytest.raises(UnsupportedEncodingError, match=r"16UC1; compressedDepth"):
        decode_compressed_image(compressed(png, "16UC1; compressedDepth"))
    with pytest.raises(UnsupportedEncodingError, match=r"h264"):
        decode_compressed_image(compressed(png, "h264"))


def test_rclpy_messages_decode(ros) -> None:
    from sensor_msgs.msg import CompressedImage, Image

    msg = Image(height=6, width=10, encoding="bgr8", step=30, data=RGB[:, :, ::-1].tobytes())
    np.testing.assert_array_equal(decode_image(msg), RGB)
    png = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))[1].tobytes()
    np.testing.assert_array_equal(decode_any(CompressedImage(format="png", data=png)), RGB)


# -- hostile compressed images: sizes read from the header, before any pixel is allocated -------------

def _jpeg_declaring(width: int, height: int, keep: int = 600) -> bytes:
    """A real JPEG's first ``keep`` bytes with its frame header rewritten to declare width x height."""
    import struct

    data = bytearray(cv2.imencode(".jpg", RGB)[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data[:keep])


def _png_declaring(width: int, height: int) -> bytes:
    import struct
    import zlib

    data = bytearray(cv2.imencode(".png", RGB)[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # a valid IHDR checksum: only the size lies
    return bytes(data)


@pytest.mark.parametrize("data", [
    _jpeg_declaring(65500, 65500),  # OpenCV raised CV_IO_MAX_IMAGE_PIXELS on this and the node died
    _jpeg_declaring(12000, 12000),  # under OpenCV's limit: it decoded 432 MB of pixels
    _png_declaring(65500, 65500),
    _png_declaring(12000, 12000),
], ids=["jpeg-65500", "jpeg-12000", "png-65500", "png-12000"])
def test_a_header_declaring_a_huge_image_is_refused_unread(data: bytes) -> None:
    from qcraft_world_model.ingest.image_decode import ImageTooLargeError

    assert len(data) < 1000
    with pytest.raises(ImageTooLargeError, match=r"declares \d+x\d+ = \d+ pixels, more than the 16777216"):
        decode_compressed_image(compressed(data))


def test_the_pixel_cap_is_the_callers_and_raw_images_obey_it() -> None:
    from qcraft_world_model.ingest.image_decode import ImageTooLargeError

    jpeg = cv2.imencode(".jpg", RGB)[1].tobytes()
    assert decode_any(compressed(jpeg), max_pixels=60).shape == (6, 10, 3)
    with pytest.raises(ImageTooLargeError):
        decode_any(compressed(jpeg), max_pixels=59)
    with pytest.raises(ImageTooLargeError):
        decode_any(raw(RGB, "rgb8"), max_pixels=59)


@pytest.mark.parametrize("kind", ["baseline", "progressive", "grey", "png", "png16"])
def test_declared_size_is_what_opencv_decodes(kind: str) -> None:
    from qcraft_world_model.ingest.image_decode import declared_size

    image = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    if kind == "baseline":
        data, codec = cv2.imencode(".jpg", image)[1], "jpeg"
    elif kind == "progressive":
        data, codec = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1], "jpeg"
    elif kind == "grey":
        data, codec = cv2.imencode(".jpg", image[:, :, 0])[1], "jpeg"
    elif kind == "png":
        data, codec = cv2.imencode(".png", image)[1], "png"
    else:
        data, codec = cv2.imencode(".png", image.astype(np.uint16) * 257)[1], "png"
    assert declared_size(data.tobytes(), codec) == (53, 37)
    assert decode_any(compressed(data.tobytes())).shape == (37, 53, 3)


def _mutations():  # noqa: ANN202 - a hypothesis strategy
    """Messages a broken or hostile camera could send: valid JPEG/PNG/raw frames with bytes flipped,
    cut, spliced or headers rewritten, and raw headers whose fields are arbitrary."""
    from hypothesis import strategies as st

    image = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    seeds = [cv2.imencode(".jpg", image)[1].tobytes(), cv2.imencode(".png", image)[1].tobytes(),
             cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()]

    @st.composite
    def mutated(draw) -> SimpleNamespace:  # noqa: ANN001
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 8))):
            at = draw(st.integers(0, len(data) - 1))
            op = draw(st.sampled_from(["flip", "cut", "insert", "size"]))
            if op == "flip":
                data[at] = draw(st.integers(0, 255))
            elif op == "cut":
                del data[at:at + draw(st.integers(1, 512))]
            elif op == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=64))
            elif len(data) > at + 4:
                data[at:at + 4] = draw(st.binary(min_size=4, max_size=4))
            if not data:
                break
        fmt = draw(st.sampled_from(["jpeg", "png", "", "rgb8; jpeg compressed bgr8", "h264"]))
        return SimpleNamespace(format=fmt, data=bytes(data))

    raw_messages = st.builds(
        SimpleNamespace, height=st.integers(-5, 70000), width=st.integers(-5, 70000),
        encoding=st.sampled_from(["rgb8", "bgr8", "mono8", "mono16", "rgba16", "yuv422", "bayer_rggb8", "32FC1", ""]),
        is_bigendian=st.integers(0, 1), step=st.integers(-5, 1 << 20), data=st.binary(max_size=4096))
    return st.one_of(mutated(), raw_messages, st.builds(SimpleNamespace, format=st.text(max_size=8),
                                                         data=st.binary(max_size=2048)))


def test_ten_thousand_hostile_messages_raise_only_decode_errors_in_bounded_time_and_memory() -> None:
    """Every message either decodes to a model-sized RGB frame or raises the project's decode error;
    none takes long or keeps memory."""
    import resource
    import time

    from hypothesis import HealthCheck, given, settings

    from qcraft_world_model.ingest import ImageDecodeError

    size = TargetSize(32, 32)
    slowest = [0.0]
    start_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @settings(max_examples=10_000, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_mutations())
    def check(message: SimpleNamespace) -> None:
        began = time.perf_counter()
        try:
            rgb = decode_any(message, size)
        except ImageDecodeError:
            pass
        else:
            assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
        slowest[0] = max(slowest[0], time.perf_counter() - began)

    check()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_rss_kb) / 1024
    assert slowest[0] < 2.0, f"one message took {slowest[0]:.2f} s to refuse or decode"
    assert grown_mb < 300, f"peak memory grew {grown_mb:.0f} MB over the run"
