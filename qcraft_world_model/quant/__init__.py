"""Mixed precision: the per-module precision plan and the INT8 paths that realise it."""
