"""A fixed, documented 3D feature extractor for FID/MMD between sets of volumes.

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

__all__ = ["VolumeFeatureExtractor"]

_DEPTHS = {10: resnet.resnet10, 18: resnet.resnet18, 34: resnet.resnet34, 50: resnet.resnet50}


class VolumeFeatureExtractor:
    """Map volumes (N, 1, D, H, W) in [-1, 1] to feature vectors (N, F).

    Args:
        weights: optional local MedicalNet ``.pth``/``.pt`` or ``.safetensors`` state dict.
        depth: ResNet depth (10, 18, 34, 50); must match ``weights`` when given.
        input_size: volumes are resized (trilinear) to this cube before the network, so
            features of different resolutions are comparable. ``None`` keeps the size.
        seed: the seed of the fixed random weights when ``weights`` is None.
        device: where to run.
    """

    def __init__(
        self,
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
                spatial_dims=3,
                n_input_channels=1,
                feed_forward=False,
                shortcut_type=shortcut,
                bias_downsample=depth in (18, 34),
            )
        self.description = f"MONAI ResNet-{depth} 3D, fixed random weights (seed {seed})"
        if weights is not None:
            self._load(Path(weights))
            self.description = f"MONAI ResNet-{depth} 3D with weights from {Path(weights).name}"
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
            raise InputError(path, f"cannot read weights safely ({type(exc).__name__}: {exc})") from exc
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
    def features(self, volumes, batch_size: int = 4) -> np.ndarray:
        """Features (N, F) of volumes given as (N, 1, D, H, W) or (N, D, H, W), values in [-1, 1]."""
        x = torch.as_tensor(np.asarray(volumes) if not isinstance(volumes, torch.Tensor) else volumes).float()
        if x.ndim == 4:
            x = x[:, None]
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(f"volumes must be (N, 1, D, H, W), got {tuple(x.shape)}")
        out = []
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size].to(self.device)
            if self.input_size is not None and tuple(batch.shape[2:]) != (self.input_size,) * 3:
                batch = F.interpolate(batch, size=(self.input_size,) * 3, mode="trilinear", align_corners=False)
            out.append(self.net(batch).flatten(1).double().cpu())
        return torch.cat(out).numpy()
