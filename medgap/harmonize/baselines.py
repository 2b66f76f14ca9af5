"""Blind baselines that also use only target-domain statistics.

- identity: the source unchanged.
- histogram matching: each slice's foreground intensities are mapped onto the
  target's foreground quantiles at the same slice position (piecewise linear
  quantile mapping; per position because the tissue mix changes along z).
- low-frequency replacement (SSIMH-style, Guan et al. 2022): the amplitude of
  the lowest spatial frequencies of the source slice is replaced by the
  target template's at the same position, keeping the source phase.
- N4 + histogram matching: SimpleITK's N4 bias-field correction of each slice's
  foreground, then histogram matching as above -- what many MR users run first.
- nyul, whitestripe, zscore, fcm: intensity-normalization's normalisers (Reinhold et al.
  2019). The source is normalised as one volume (all foreground of the slices passed
  together); the result is brought into the target's intensity units by the same
  normaliser fitted on the target's foreground intensities at the same slice positions
  (the model's stored quantiles): Nyul's standard scale is fitted on them with the
  target's 1st/99th percentiles as output range; z-score, WhiteStripe and FCM are affine,
  so the target's own normalisation is inverted.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["identity", "match_ranks", "histogram_match", "lowfreq_replace", "n4_histogram_match", "n4_log_field", "n4_volume",
           "level_slices", "BASELINES"]


def identity(xs: Tensor, templates: Tensor, quantiles: Tensor, threshold: float = 0.05) -> Tensor:
    """Return the source slices unchanged."""
    return xs.clone()


def match_ranks(values: Tensor, target: Tensor, *, nearest: bool = False) -> Tensor:
    """``values (n,)`` mapped by rank onto the distribution given by ``target (m,)``, sorted
    ascending (samples, or quantiles at equal steps): the k-th smallest value becomes the target at
    relative rank k / (n - 1), interpolated linearly (or the nearest target with ``nearest``).
    Ties keep their order (stable). The one histogram matching of harmonize: the baseline below
    and the training-time standardisation (:func:`medgap.harmonize.augment.match_own_histogram`)."""
    n, m = values.numel(), target.numel()
    pos = torch.linspace(0, m - 1, n, dtype=torch.float64)
    if nearest:
        ordered = target[pos.round().long()]
    else:
        lo = pos.floor().long().clamp_max(m - 1)
        hi = (lo + 1).clamp_max(m - 1)
        ordered = target[lo] + (pos - lo).to(target.dtype) * (target[hi] - target[lo])
    out = torch.empty_like(ordered)
    out[values.argsort(stable=True)] = ordered
    return out


def histogram_match(xs: Tensor, templates: Tensor, quantiles: Tensor, threshold: float = 0.05) -> Tensor:
    """Map foreground (> threshold) intensities of ``xs (B, 1, H, W)`` to target ``quantiles (B, Q)``."""
    out = xs.clone()
    for i in range(xs.shape[0]):
        fg = xs[i] > threshold
        if int(fg.sum()) < 2:
            continue
        out[i][fg] = match_ranks(xs[i][fg], quantiles[i].to(xs)).to(xs)
    return out


def lowfreq_replace(xs: Tensor, templates: Tensor, quantiles: Tensor, threshold: float = 0.05,
                    beta: float = 0.03) -> Tensor:
    """Swap the amplitude of the centred ``(2 beta H) x (2 beta W)`` low-frequency window."""
    h, w = xs.shape[-2:]
    fs = torch.fft.fftshift(torch.fft.fft2(xs), dim=(-2, -1))
    ft = torch.fft.fftshift(torch.fft.fft2(templates.to(xs)), dim=(-2, -1))
    bh, bw = max(1, int(beta * h)), max(1, int(beta * w))
    ch, cw = h // 2, w // 2
    amp, phase = fs.abs(), fs.angle()
    amp[..., ch - bh:ch + bh + 1, cw - bw:cw + bw + 1] = ft.abs()[..., ch - bh:ch + bh + 1, cw - bw:cw + bw + 1]
    out = torch.fft.ifft2(torch.fft.ifftshift(torch.polar(amp, phase), dim=(-2, -1))).real
    # keep the background (the source's zero region) as it was
    return torch.where(xs > threshold, out.clamp(0, 1), xs)


def n4_correct(xs: Tensor, threshold: float = 0.05) -> Tensor:
    """N4 bias-field correction (SimpleITK) of each slice ``(B, 1, H, W)`` inside its foreground."""
    import SimpleITK as sitk

    out = xs.clone()
    for i in range(xs.shape[0]):
        image = xs[i, 0].detach().cpu().numpy().astype(np.float32)
        fg = image > threshold
        if fg.sum() < 50:
            continue
        n4 = sitk.N4BiasFieldCorrectionImageFilter()
        n4.SetMaximumNumberOfIterations([30, 20, 10])
        corrected = sitk.GetArrayFromImage(n4.Execute(sitk.GetImageFromArray(image),
                                                      sitk.GetImageFromArray(fg.astype(np.uint8))))
        out[i, 0] = torch.from_numpy(np.where(fg, corrected, image)).to(xs)
    return out


def n4_log_field(slices: Tensor, masks: Tensor | None = None, threshold: float = 0.05,
                 shrink: int = 4) -> tuple[np.ndarray, np.ndarray] | None:
    """The log bias field (N, H, W) that SimpleITK's N4 estimates over consecutive slices ``(N, 1, H, W)``
    of one volume, in 3D (a field that varies from slice to slice is one smooth 3D field; a per-slice
    N4 sees each slice alone), centred to mean 0 over the foreground; and that foreground. Fitted on a
    copy shrunk by ``shrink`` in-plane (half that along z) inside ``masks`` (else the intensity
    foreground), three fitting levels of 50 iterations. None where there is too little to fit."""
    import SimpleITK as sitk

    image = slices[:, 0].detach().cpu().numpy().astype(np.float32)
    fg = ((masks[:, 0].cpu().numpy() > 0) if masks is not None else image > threshold) & (image > 0)
    if fg.sum() < 500 or len(image) < 4:
        return None
    img, msk = sitk.GetImageFromArray(image), sitk.GetImageFromArray(fg.astype(np.uint8))
    factors = [shrink, shrink, max(1, shrink // 2)]  # SimpleITK order x, y, z (slices are often thicker)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([50] * 3)  # a fourth level's finer mesh starts to fit the anatomy
    n4.SetConvergenceThreshold(1e-6)
    n4.Execute(sitk.Shrink(img, factors), sitk.Shrink(msk, factors))
    log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(img))
    return log_field - log_field[fg].mean(), fg


def n4_volume(slices: Tensor, masks: Tensor | None = None, threshold: float = 0.05, weight: float = 1.0,
              field: tuple[np.ndarray, np.ndarray] | None = None) -> Tensor:
    """``slices`` divided by ``weight`` x the 3D N4 field (:func:`n4_log_field`, or ``field`` from it):
    the overall brightness is kept (the field's mean over the foreground is 1), the background unchanged."""
    field = field if field is not None else n4_log_field(slices, masks, threshold)
    if field is None or weight <= 0:
        return slices.clone()
    log_field, fg = field
    image = slices[:, 0].detach().cpu().numpy().astype(np.float32)
    corrected = np.where(fg, image / np.exp(weight * log_field), image)
    return torch.from_numpy(np.clip(corrected, 0, 1)[:, None]).to(slices)


def level_slices(slices: Tensor, threshold: float = 0.05, sigma: float = 2.0,
                 gate: tuple[float, float] = (0.015, 0.022), limits: tuple[float, float] = (0.67, 1.5)) -> Tensor:
    """Consecutive slices ``(N, 1, H, W)`` of one volume with slice-to-slice gain jumps removed.

    The gain of each slice relative to the next is the median, over the foreground (> ``threshold``)
    both share, of the log-ratio of their intensities (neighbouring slices show nearly the same
    anatomy, so a change of tissue moves the median little); summed along z it gives each slice's log
    gain, whose part faster than a Gaussian of ``sigma`` slices (jitter, the odd/even pattern of an
    interleaved acquisition) is divided out, while slow changes (anatomy, a bias field) are kept. The
    correction is weighted by the spread (sd) of that fast part: 0 up to ``gate[0]``, 1 from
    ``gate[1]`` (Colin 27: untouched and changed volumes without jumps 0.009-0.012, half resolution +
    noise 0.025, an odd/even gain of +-8 % 0.080), and each scale is clamped to ``limits``. Slices with
    fewer than 50 foreground pixels, and the background, are unchanged."""
    from scipy.ndimage import gaussian_filter1d

    fg = slices[:, 0] > threshold
    rows = torch.nonzero(fg.flatten(1).sum(1) >= 50).flatten().tolist()
    if len(rows) < 3:
        return slices.clone()
    steps = []
    for a, b in zip(rows[:-1], rows[1:]):
        both = fg[a] & fg[b]
        steps.append(float(torch.log(slices[b, 0][both] / slices[a, 0][both]).median()) if int(both.sum()) >= 50 else 0.0)
    log_gain = np.r_[0.0, np.cumsum(steps)]
    fast = log_gain - gaussian_filter1d(log_gain, sigma, mode="nearest")
    weight = float(np.clip((fast.std() - gate[0]) / max(gate[1] - gate[0], 1e-9), 0, 1))
    if weight == 0:
        return slices.clone()
    scale = torch.tensor(np.clip(np.exp(-weight * fast), *limits), dtype=slices.dtype)
    out = slices.clone()
    out[rows] = torch.where(fg[rows, None], (slices[rows] * scale[:, None, None, None]).clamp(0, 1), slices[rows])
    return out


def n4_histogram_match(xs: Tensor, templates: Tensor, quantiles: Tensor, threshold: float = 0.05) -> Tensor:
    """N4 bias correction, then :func:`histogram_match` to the target's quantiles."""
    return histogram_match(n4_correct(xs, threshold), templates, quantiles, threshold)


def _library_baseline(name: str):
    def normalize(xs: Tensor, templates: Tensor, quantiles: Tensor, threshold: float = 0.05) -> Tensor:
        import intensity_normalization as inorm

        fg = (xs > threshold).cpu().numpy()
        if fg.sum() < 10:
            return xs.clone()
        source = inorm.create_image(xs.detach().cpu().numpy().astype(np.float64))
        mask = inorm.create_image(fg.astype(np.float64))
        target_values = np.sort(quantiles.detach().cpu().numpy().astype(np.float64).ravel())
        target = inorm.create_image(target_values)
        target_mask = inorm.create_image(np.ones_like(target_values))
        if name == "nyul":
            lo, hi = np.percentile(target_values, [1, 99])
            norm = inorm.NyulNormalizer(output_min_value=float(lo), output_max_value=float(hi))
            norm.fit_population([target], [target_mask])
            out = norm.transform(source, mask).get_data()
        else:
            cls = {"zscore": inorm.ZScoreNormalizer, "whitestripe": inorm.WhiteStripeNormalizer,
                   "fcm": inorm.FCMNormalizer}[name]
            # the normalisers are affine in the intensities: u = a + scale * x on the target
            u = cls().fit_transform(target, target_mask).get_data()
            scale, a = np.polyfit(target_values, u, 1)
            out = (cls().fit_transform(source, mask).get_data() - a) / (scale if abs(scale) > 1e-12 else 1.0)
        out = torch.from_numpy(np.clip(out, 0, 1)).to(xs)
        return torch.where(xs > threshold, out, xs)

    normalize.__name__ = name
    normalize.__doc__ = f"intensity-normalization's {name}, in the target's intensity units (module docstring)."
    return normalize


BASELINES = {"identity": identity, "histogram": histogram_match, "lowfreq": lowfreq_replace,
             "n4+histogram": n4_histogram_match,
             **{n: _library_baseline(n) for n in ("nyul", "whitestripe", "zscore", "fcm")}}
