"""Fixed, documented feature extractors for FID/MMD between sets of volumes (3D) or slices (2D).

No pretrained 3D medical network can be installed offline, so the default extractor
is MONAI's 3D ResNet-10 (MedicalNet layout: shortcut B, no downsample bias) with
weights drawn from a fixed seed (``seed=0``, PyTorch's default initialisers). Random
convolutional features are a known, reproducible embedding: the same volumes give the
same features on every machine with the same torch version, so FID/MMD values are
comparable between runs of medgap -- but not with numbers computed on MedicalNet or
Inception features. Users who have MedicalNet weights (``resnet_10.pth`` ...) can pass
the file; it is read with ``torch.load(weights_only=True)`` (no unpickling of code).

Features: the global-average-pooled output of the last residual stage, 512-d for
ResNet-10/18/34, 2048-d for ResNet-50 (as used by the HA-GAN publication).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import resnet

from medgap.errors import InputError

__all__ = ["FeatureExtractor", "VolumeFeatureExtractor", "SliceFeatureExtractor"]

_DEPTHS = {10: resnet.resnet10, 18: resnet.resnet18, 34: resnet.resnet34, 50: resnet.resnet50}


class FeatureExtractor:
    """Map images (N, 1, *spatial) in [-1, 1] to feature vectors (N, F).

    Args:
        spatial_dims: 3 for volumes (N, 1, D, H, W), 2 for slices (N, 1, H, W).
        weights: optional local MedicalNet ``.pth``/``.pt`` or ``.safetensors`` state dict.
        depth: ResNet depth (10, 18, 34, 50); must match ``weights`` when given.
        input_size: inputs are resized (linear interpolation) to this cube/square first, so
            features of different resolutions are comparable. ``None`` keeps the size.
        seed: the seed of the fixed random weights when ``weights`` is None.
        device: where to run.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        weights: str | Path | None = None,
        depth: int = 10,
        input_size: int | None = 64,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        if depth not in _DEPTHS:
            raise ValueError(f"depth must be one of {sorted(_DEPTHS)}, got {depth}")
        shortcut = "A" if depth in (18, 34) else "B"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = _DEPTHS[depth](
                spatial_dims=spatial_dims,
                n_input_channels=1,
                feed_forward=False,
                shortcut_type=shortcut,
                bias_downsample=depth in (18, 34),
            )
        self.spatial_dims = spatial_dims
        self.description = f"MONAI ResNet-{depth} {spatial_dims}D, fixed random weights (seed {seed})"
        if weights is not None:
            self._load(Path(weights))
            self.description = f"MONAI ResNet-{depth} {spatial_dims}D with weights from {Path(weights).name}"
        self.net.eval().to(device)
        self.device = torch.device(device)
        self.input_size = input_size

    def _load(self, path: Path) -> None:
        if not path.exists():
            raise InputError(path, "feature-extractor weights file does not exist")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            # PyTorch's message suggests weights_only=False, i.e. running the file's code: never do that
            raise InputError(path, "not a plain tensor checkpoint (damaged, or holding code that medgap never "
                                   f"unpickles; {type(exc).__name__})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        own = self.net.state_dict()
        matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
        if missing:
            raise InputError(path, f"weights do not fit this ResNet ({len(missing)} tensors missing, e.g. {missing[:3]})")
        self.net.load_state_dict(matched, strict=False)

    @torch.inference_mode()
    def features(self, images, batch_size: int = 4) -> np.ndarray:
        """Features (N, F) of images given as (N, 1, *spatial) or (N, *spatial), values in [-1, 1]."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).float()
        d = self.spatial_dims
        if x.ndim == d + 1:
            x = x[:, None]
        if x.ndim != d + 2 or x.shape[1] != 1:
            raise ValueError(f"inputs must be (N, 1, {', '.join('DHW'[-d:])}), got {tuple(x.shape)}")
        size = None if self.input_size is None else (self.input_size,) * d
        mode = "trilinear" if d == 3 else "bilinear"
        out = []
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size].to(self.device)
            if size is not None and tuple(batch.shape[2:]) != size:
                batch = F.interpolate(batch, size=size, mode=mode, align_corners=False)
            out.append(self.net(batch).flatten(1).double().cpu())
        return torch.cat(out).numpy()


class VolumeFeatureExtractor(FeatureExtractor):
    """3D ResNet features of volumes (N, 1, D, H, W); see :class:`FeatureExtractor`."""

    def __init__(self, weights=None, depth: int = 10, input_size: int | None = 64, seed: int = 0, device="cpu"):
        super().__init__(3, weights, depth, input_size, seed, device)


class SliceFeatureExtractor(FeatureExtractor):
    """2D ResNet features of slices (N, 1, H, W); see :class:`FeatureExtractor`."""

    def __init__(self, weights=None, depth: int = 10, input_size: int | None = 128, seed: int = 0, device="cpu"):
        super().__init__(2, weights, depth, input_size, seed, device)
