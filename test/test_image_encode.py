"""numpy → sensor_msgs/Image for the output side, for rosbags and rclpy classes."""

from __future__ import annotations

import numpy as np
import pytest

from qcraft_world_model.ingest import decode_image, image_fields, to_image_msg
from message_samples import TYPESTORE

RGB = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding, array", [("rgb8", RGB), ("bgr8", RGB[:, :, ::-1]),
                                             ("mono8", RGB[:, :, 0])])
def test_encoded_image_decodes_back(encoding: str, array: np.ndarray) -> None:
    fields = image_fields(np.ascontiguousarray(array), encoding)
    assert fields["step"] == 7 * (1 if encoding == "mono8" else 3)
    decoded = decode_image(type("Msg", (), fields))
    expected = RGB if encoding != "mono8" else np.repeat(RGB[:, :, :1], 3, axis=2)
    np.testing.assert_array_equal(decoded, expected)


def test_rosbags_image_message() -> None:
    header = TYPESTORE.types["std_msgs/msg/Header"](
        stamp=TYPESTORE.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam")
    msg = to_image_msg(RGB, header, TYPESTORE.types["sensor_msgs/msg/Image"])
    np.testing.assert_array_equal(decode_image(msg), RGB)
    TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/Image")  # a valid message, not just duck-typed


def test_rclpy_image_message(ros) -> None:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    msg = to_image_msg(RGB, Header(frame_id="cam"), Image)
    assert (msg.height, msg.width, msg.encoding, msg.step) == (5, 7, "rgb8", 21)
    np.testing.assert_array_equal(decode_image(msg), RGB)


@pytest.mark.parametrize("array, encoding, message", [
    (RGB.astype(np.float32), "rgb8", "must be uint8"),
    (RGB, "rgba8", r"does not hold rgba8"),
    (RGB, "yuv422", r"cannot write encoding 'yuv422'"),
    (np.zeros((0, 4, 3), np.uint8), "rgb8", "is empty"),
])
def test_bad_arrays_are_refused(array: np.ndarray, encoding: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_fields(array, encoding)
