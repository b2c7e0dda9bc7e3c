"""qcraft_world_model: an on-vehicle driving world model for ROS 2.

The library (model, quantization, runtime backends, data, evaluation) imports
nothing from rclpy; only ``qcraft_world_model.ros`` does. When the package is
built with colcon, the generated message classes live in
``qcraft_world_model.msg``.
"""

__version__ = "0.1.0"
