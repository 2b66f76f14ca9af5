"""Adapters that put medgap into other toolkits' pipelines (MONAI). They add no logic of their own."""
