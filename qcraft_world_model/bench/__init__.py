"""Benchmarks behind ``qcraft-wm bench``: they measure and print JSON; tests never assert timings."""
