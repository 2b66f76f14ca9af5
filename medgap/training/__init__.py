"""Pieces every trainer uses: device and seeding, progress, metric logs, checkpoints, torchrun."""
