"""What is compared: image features (ResNet, tissue summaries) and spectra."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medgap.errors import InputError
from medgap.metrics.tissue import SliceSummaries, concat_summaries, summarise_volume, tissue_labels
from medgap.gap.data import GapData, POSITION_BINS

# --------------------------------------------------------------------------- features


def _axial_slice_index(volume: np.ndarray, max_slices: int) -> np.ndarray:
    """Indices of axial slices (RAS axis 2) whose foreground covers at least 10% of the largest one."""
    area = (volume > 0.05).reshape(-1, volume.shape[2]).sum(0)
    keep = np.flatnonzero(area >= 0.1 * area.max()) if area.max() > 0 else np.arange(volume.shape[2])
    if len(keep) > max_slices:
        keep = keep[np.linspace(0, len(keep) - 1, max_slices).round().astype(int)]
    return keep


@dataclass
class ImageSide:
    """One image dataset reduced to what every measure needs."""

    features: np.ndarray  # (N, F) network features of the samples (slices or volumes)
    descriptors: np.ndarray  # (N, D) per-sample intensity/texture descriptors for the classifier
    summaries: SliceSummaries  # per-slice tissue/bias/texture summaries
    sample_groups: list[str]  # per sample: what a split must keep together (subject, slice position)
    values: np.ndarray  # foreground intensities, for the histogram figure


def _image_side(data: GapData, unit: str, max_slices: int, seed: int) -> ImageSide:
    """Network features, per-slice summaries and classifier descriptors of one side."""
    from medgap.metrics.features import SliceFeatureExtractor, VolumeFeatureExtractor

    per_volume = max(2, max_slices // len(data.items))
    index = [_axial_slice_index(v, per_volume) for v in data.items]
    # Each volume's own mixture fit. Taking the reference's labels for volumes on its grid was
    # tried: two halves of one brain one slice apart are "on the same grid" too, and mislabelled
    # voxels then read as a large gap. Without registration, classes are defined by intensity rank.
    labels = [tissue_labels(v) for v in data.items]
    summaries = concat_summaries([summarise_volume(v, k, i, seed, lab)
                                  for i, (v, k, lab) in enumerate(zip(data.items, index, labels))])
    descriptors = _slice_descriptors(summaries)
    names = data.item_names or [f"{data.name}#{i}" for i in range(len(data.items))]
    values = np.concatenate([v[v > 0.05].ravel() for v in data.items])
    if unit == "volume":
        stack = np.stack([_resize_cube(v, 64) for v in data.items])
        features = VolumeFeatureExtractor(input_size=64).features(stack * 2 - 1)
        per_volume_desc = np.stack([descriptors[summaries.volume == i].mean(0) for i in range(len(data.items))])
        # volumes of the same name on both sides are the same subject: one group
        return ImageSide(features, per_volume_desc, summaries, [f"subject:{n}" for n in names], values)
    slices = [v[:, :, k] for v, ks in zip(data.items, index) for k in ks]
    stack = np.stack([_resize_square(s, 128) for s in slices])
    features = SliceFeatureExtractor(input_size=128).features(stack * 2 - 1, batch_size=16)
    # slices at the same height share anatomy across the two sides (paired data): keep them together
    groups = [f"position:{int(p * POSITION_BINS)}" for p in summaries.position]
    return ImageSide(features, descriptors, summaries, groups, values)


def _slice_descriptors(s: SliceSummaries) -> np.ndarray:
    """Per slice: each tissue class's coarse intensity histogram and mean, and the GLCM features."""
    coarse = s.hist.reshape(len(s), s.hist.shape[1], 16, -1).sum(-1)
    coarse = coarse / np.maximum(coarse.sum(-1, keepdims=True), 1)
    means = s.class_sum / np.maximum(s.class_count, 1)
    return np.concatenate([coarse.reshape(len(s), -1), means, s.texture], axis=1)


def _resize_cube(volume: np.ndarray, size: int) -> np.ndarray:
    import torch

    t = torch.as_tensor(volume)[None, None]
    return torch.nn.functional.interpolate(t, size=(size,) * 3, mode="trilinear", align_corners=False)[0, 0].numpy()


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    import torch

    t = torch.as_tensor(np.ascontiguousarray(image))[None, None]
    return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _nonzero(data: GapData) -> np.ndarray:
    return np.linalg.norm(data.spectra, axis=1) > 0


def _spectral_features(data: GapData) -> np.ndarray:
    keep = _nonzero(data)
    if not keep.any():
        raise InputError(data.source, "every spectrum is all zero (L2 norm 0)")
    return data.spectra[keep] / np.linalg.norm(data.spectra[keep], axis=1, keepdims=True)
