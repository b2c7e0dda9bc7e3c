"""Benchmarks behind ``qcraft-wm bench``: they measure and print JSON; tests never assert timings.

``attention`` (sparse vs dense), ``model`` (latency per part and precision plan), ``node`` (the
predictor through DDS; its DDS side is ``ros/node_bench.py``, as rclpy stays under ``ros/``),
``render`` (the scene renderer) and ``gpu`` (attention and the models on a lent GPU).
"""
