"""What zotune reads and writes on disk: crash-safe writes, output folders it may touch, JSON lines."""
