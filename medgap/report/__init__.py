"""Figures and reports."""

from medgap.report.figures import save_figure

__all__ = ["save_figure"]
