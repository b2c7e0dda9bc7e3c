"""Evaluation: metrics, baselines, replay evaluation and reports (no rclpy)."""
