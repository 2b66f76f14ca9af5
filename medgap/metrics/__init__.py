"""Image quality, segmentation overlap and distribution distances shared by every method."""

from medgap.metrics.distribution import frechet_distance, mmd2_unbiased, median_bandwidth
from medgap.metrics.image import dice, iou, psnr, ssim

__all__ = ["psnr", "ssim", "dice", "iou", "mmd2_unbiased", "frechet_distance", "median_bandwidth"]
