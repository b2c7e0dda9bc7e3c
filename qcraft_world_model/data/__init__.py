"""Data: scene generation, clip datasets and rosbag2 I/O (no rclpy)."""
