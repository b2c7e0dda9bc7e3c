"""Camera ingest, independent of the model and of rclpy.

Decoding camera messages to arrays, the per-camera ring window, the camera-stream
policy (which frames form which model windows), the ingest parameters, and arrays
back to ``Image`` messages.
"""

from qcraft_world_model.ingest.config import CameraConfig, ConfigError, IngestConfig, load_parameters
from qcraft_world_model.ingest.image_decode import (
    ImageDecodeError,
    MalformedImageError,
    TargetSize,
    UnsupportedEncodingError,
    decode_any,
    decode_compressed_image,
    decode_image,
)
from qcraft_world_model.ingest.image_encode import image_fields, to_image_msg
from qcraft_world_model.ingest.ring_window import PushOutcome, RingWindow
from qcraft_world_model.ingest.stream_policy import Job, StreamPolicy, StreamSettings

__all__ = [
    "CameraConfig", "ConfigError", "ImageDecodeError", "IngestConfig", "Job", "MalformedImageError",
    "PushOutcome", "RingWindow", "StreamPolicy", "StreamSettings", "TargetSize",
    "UnsupportedEncodingError", "decode_any", "decode_compressed_image", "decode_image",
    "image_fields", "load_parameters", "to_image_msg",
]
