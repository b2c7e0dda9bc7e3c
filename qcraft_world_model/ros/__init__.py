"""The ROS 2 edge: the predictor node and message conversion. Only this package imports rclpy."""
