"""Datasets: bundled offline sample data and spectral simulators."""
