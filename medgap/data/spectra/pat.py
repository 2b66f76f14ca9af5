"""Labelled multispectral photoacoustic (PAT) images of forearm-like vessel phantoms.

Initial pressure ``p0 = Gamma * mu_a * Phi`` (Grueneisen parameter Gamma, absorption mu_a in cm^-1,
fluence Phi). Each image is a 2D slice (depth x lateral) with coupling medium, epidermis, dermis,
subcutaneous fat, muscle and a few arteries (sO2 0.9-1.0) and veins (sO2 0.6-0.8); the segmentation
map (label values = index in ``PAT_LABELS``) is the label.

``simple``: one Grueneisen value, fluence ``exp(-mu_eff d)`` with the muscle's effective attenuation
mu_eff = sqrt(3 mu_a (mu_a + mu_s')) and depth d below the skin, no detector.

``rich`` ("real-like" stand-in): fluence integrated through the actual tissue column (spectral
colouring by the layers above and shadows under vessels) and spread laterally, Gaussian illumination
profile, per-wavelength pulse energy jitter, heterogeneous blood and scattering, tissue-specific
Grueneisen values, a band-limited detector (blur plus low-frequency loss with negative halos) and
noise. It stands in for real recordings in tests and the demo; it is not one.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from medgap.errors import InputError
from medgap.io import ImageSet

from .chromophores import absorption, reduced_scattering
from .tissues import PAT_LABELS, PAT_TISSUES, sample_parameters

__all__ = ["DEFAULT_PAT_WAVELENGTHS", "simulate_pat", "ARTERY", "VEIN"]

DEFAULT_PAT_WAVELENGTHS = np.arange(700.0, 851.0, 10.0)  # 16 channels
ARTERY, VEIN = PAT_LABELS.index("artery"), PAT_LABELS.index("vein")
_GRUENEISEN_RICH = {"coupling_medium": 0.11, "epidermis": 0.2, "dermis": 0.2, "fat": 0.8, "muscle": 0.2,
                    "artery": 0.2, "vein": 0.2}


def _geometry(h: int, w: int, pixel_cm: float, rng: np.random.Generator):
    """Segmentation (H, W) int64 and depth below the skin surface (H, W) in cm."""
    y = np.arange(h)[:, None].astype(np.float64)
    x = np.arange(w)[None, :].astype(np.float64)
    surface = h * rng.uniform(0.06, 0.14) + h * 0.03 * np.sin(2 * np.pi * x / w * rng.uniform(0.3, 1.0) + rng.uniform(0, 6.3))
    depth_cm = np.clip(y - surface, 0.0, None) * pixel_cm
    epi, derm, fat = 0.01, rng.uniform(0.1, 0.15), rng.uniform(0.15, 0.4)  # layer thicknesses, cm
    seg = np.full((h, w), PAT_LABELS.index("muscle"), dtype=np.int64)
    seg[depth_cm < epi + derm + fat] = PAT_LABELS.index("fat")
    seg[depth_cm < epi + derm] = PAT_LABELS.index("dermis")
    seg[depth_cm < max(epi, 1.01 * pixel_cm)] = PAT_LABELS.index("epidermis")
    seg[y < surface] = PAT_LABELS.index("coupling_medium")
    max_depth = max((h - surface.max()) * pixel_cm, 0.2)
    for _ in range(rng.integers(1, 3)):  # arteries, each with one or two accompanying veins
        cx = rng.uniform(0.15, 0.85) * w
        d = rng.uniform(0.2, min(1.0, 0.8 * max_depth))
        r = rng.uniform(0.06, 0.15) / pixel_cm
        cy = surface[0, int(cx)] + d / pixel_cm
        seg[(x - cx) ** 2 + (y - cy) ** 2 < r**2] = ARTERY
        for side in rng.choice([-1, 1], size=rng.integers(1, 3), replace=False):
            rv = rng.uniform(0.05, 0.2) / pixel_cm
            vx, vy = cx + side * (r + rv + rng.uniform(0.5, 3.0)), cy + rng.uniform(-2.0, 2.0) * r
            seg[((x - vx) ** 2 + (y - vy) ** 2 < rv**2) & (seg != ARTERY)] = VEIN
    # a superficial vein in the fat layer
    vx, rv = rng.uniform(0.1, 0.9) * w, rng.uniform(0.04, 0.1) / pixel_cm
    vy = surface[0, int(vx)] + (epi + derm + 0.5 * fat) / pixel_cm
    seg[((x - vx) ** 2 + (y - vy) ** 2 < rv**2) & (seg != ARTERY)] = VEIN
    return seg, depth_cm


def _smooth_field(shape, sigma_px: float, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    f = gaussian_filter(rng.normal(size=shape), sigma_px)
    return np.exp(amplitude * f / (f.std() + 1e-12))


def simulate_pat(n: int, *, wavelengths: np.ndarray | None = None, shape: tuple[int, int] = (128, 256),
                 pixel_mm: float = 0.15, realism: str = "simple", seed: int = 0) -> ImageSet:
    """Simulate ``n`` multispectral p0 images.

    Returns an ImageSet: images (n, C, H, W) float32 (arbitrary pressure units), wavelengths (C,) nm,
    segmentation (n, H, W) int64 with ``PAT_LABELS`` as label_names.
    """
    if realism not in ("simple", "rich"):
        raise InputError(None, f"realism must be 'simple' or 'rich', got {realism!r}")
    h, w = (int(s) for s in shape)
    if n < 1 or h < 16 or w < 16:
        raise InputError(None, f"need n >= 1 and images of at least 16x16 pixels, got n={n}, shape={shape}")
    wl = DEFAULT_PAT_WAVELENGTHS if wavelengths is None else np.asarray(wavelengths, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rich = realism == "rich"
    pixel_cm = pixel_mm / 10.0
    images = np.empty((n, len(wl), h, w), dtype=np.float32)
    segs = np.empty((n, h, w), dtype=np.int64)
    for i in range(n):
        seg, depth_cm = _geometry(h, w, pixel_cm, rng)
        p = {name: {k: v[0] for k, v in sample_parameters(PAT_TISSUES[name], 1, rng).items()} for name in PAT_LABELS}
        blood_mu = np.stack([absorption(wl, blood=p[c]["blood"], so2=p[c]["so2"], water=0, fat=0) for c in PAT_LABELS])
        rest_mu = np.stack([absorption(wl, blood=0, so2=0, water=p[c]["water"], fat=p[c]["fat"],
                                       melanin=p[c]["melanin"]) for c in PAT_LABELS])
        mus = np.stack([reduced_scattering(wl, p[c]["a"], p[c]["b"]) for c in PAT_LABELS])  # (K, C)
        if not rich:
            mu_a = (blood_mu + rest_mu)[seg].transpose(2, 0, 1)  # (C, H, W)
            m = PAT_LABELS.index("muscle")
            mu_eff = np.sqrt(3.0 * (blood_mu[m] + rest_mu[m]) * (blood_mu[m] + rest_mu[m] + mus[m]))
            fluence = np.exp(-mu_eff[:, None, None] * depth_cm[None])
            p0 = 0.2 * mu_a * fluence
        else:
            tissue = (seg != ARTERY) & (seg != VEIN) & (seg != PAT_LABELS.index("coupling_medium"))
            blood_field = np.where(tissue, _smooth_field((h, w), 6.0, 0.4, rng), 1.0)
            scat_field = np.where(tissue, _smooth_field((h, w), 10.0, 0.25, rng), 1.0)
            mu_a = blood_mu[seg].transpose(2, 0, 1) * blood_field + rest_mu[seg].transpose(2, 0, 1)
            mu_s = mus[seg].transpose(2, 0, 1) * scat_field
            mu_eff = np.sqrt(3.0 * mu_a * (mu_a + mu_s))
            mu_eff[:, seg == PAT_LABELS.index("coupling_medium")] = 0.0  # light reaches the skin unattenuated
            fluence = np.exp(-np.cumsum(mu_eff, axis=1) * pixel_cm)
            fluence = gaussian_filter1d(fluence, sigma=0.1 / pixel_cm, axis=2)  # diffuse lateral spread
            beam = np.exp(-(((np.arange(w) - rng.uniform(0.4, 0.6) * w) / (rng.uniform(0.6, 1.0) * w)) ** 2))
            pulse = rng.normal(1.0, 0.05, len(wl))[:, None, None]
            gamma = np.array([_GRUENEISEN_RICH[c] for c in PAT_LABELS])[seg]
            p0 = gamma[None] * mu_a * fluence * beam[None, None, :] * pulse
            p0 = gaussian_filter(p0, sigma=(0, 1.0, 2.0))  # finite detector bandwidth / aperture
            p0 = p0 - 0.5 * gaussian_filter(p0, sigma=(0, 8.0, 8.0))  # lost low frequencies: negative halos
            p0 = p0 + rng.normal(0.0, 0.01 * np.percentile(np.abs(p0), 99), p0.shape)
        images[i] = p0
        segs[i] = seg
    return ImageSet(images=images, wavelengths=wl.astype(np.float64), segmentation=segs, label_names=list(PAT_LABELS))
