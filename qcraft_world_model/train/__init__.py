"""Training: clip datasets as model batches, and the resumable training loop."""
