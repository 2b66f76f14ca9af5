"""The BlindHarmony optimiser (Eq. 1-2): find x close in structure to the source x_s
and likely under the target flow f.

    D(x, x_s) = b1 (1 - NCC(x, x_s)) + b2 || M . G x ||_1                   (Eq. 1)
    x_h = argmin_x D(x, x_s) + alpha |f(x)|^2                               (Eq. 2)

``structure`` swaps the global NCC of Eq. 1 for a term that does not carry the source's
contrast: ``ngf`` (normalised gradient fields, Haber & Modersitzki 2006: 1 - mean squared cosine
of the angle between the gradients of x and x_s, blind to a contrast's sign and size) or
``local_ncc`` (1 - mean NCC over 9 x 9 windows, as in ANTs' CC metric: a local, not a global,
linear relation to the source). ``init="standardized"`` starts from the source after N4 bias
correction and histogram matching to the target instead of from the target's template.

``mode="alternating"`` (the reference): per iteration a gradient step on D in
image space, then ``z = f(x); z <- (1 - alpha) z; x = f^-1(z)``; no autograd
through f (2 flow passes per iteration). The gradient of D is written out by
hand (it is two lines) so the whole loop runs under ``torch.inference_mode``
with no host synchronisation. ``mode="autograd"`` instead descends the full
Eq. 2 with gradients through f (one forward and one backward pass per
iteration).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

from medgap.harmonize.config import OptimizerConfig
from medgap.harmonize.model import SliceFlow

__all__ = ["HarmonizeOptions", "edge_masks", "sobel", "distance", "distance_grad", "harmonize_batch"]

# Reference resolution: step sizes b1 and b2 are quoted for 144 x 176 slices.
_REF_PIXELS = 144 * 176


# the optimiser's settings are the config section ``harmonize`` itself (one class, no mirror)
HarmonizeOptions = OptimizerConfig


def _sobel_kernels(x: Tensor) -> Tensor:
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    return torch.stack([k, k.T])[:, None]  # (2, 1, 3, 3): d/dW, d/dH


def sobel(x: Tensor, padding: str = "zeros") -> Tensor:
    """Sobel gradients ``(B, 1, H, W) -> (B, 2, H, W)`` (zero padding, as the reference; or
    ``"replicate"``: no edge at the slice border)."""
    if padding == "replicate":
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), _sobel_kernels(x))
    return F.conv2d(x, _sobel_kernels(x), padding=1)


def edge_masks(xs: Tensor, percentile: float = 30.0, threshold: float = 0.05) -> Tensor:
    """Non-edge masks M ``(B, 2, H, W)``, one per direction: |Sobel x_s| below the given
    percentile of its values *inside the foreground* ``x_s > threshold`` (taking the
    percentile over the whole slice, as the reference did, empties the mask whenever
    background covers more than ``percentile`` % of the slice)."""
    g = sobel(xs).abs()
    fg = (xs > threshold).expand_as(g)
    vals = torch.where(fg, g, torch.nan).flatten(2)
    thr = torch.nanquantile(vals, percentile / 100.0, dim=2)  # (B, 2); NaN for empty slices
    thr = torch.nan_to_num(thr, nan=0.0)
    return g < thr[:, :, None, None]


def _ncc_parts(x: Tensor, xs: Tensor, form: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    a, b = x.flatten(1), xs.flatten(1)
    if form == "pearson":
        a = a - a.mean(dim=1, keepdim=True)
        b = b - b.mean(dim=1, keepdim=True)
    elif form != "cosine":
        raise ValueError(f"ncc form must be 'pearson' or 'cosine', not {form!r}")
    na = a.norm(dim=1, keepdim=True).clamp_min(1e-8)
    nb = b.norm(dim=1, keepdim=True).clamp_min(1e-8)
    ncc = (a * b).sum(dim=1, keepdim=True) / (na * nb)
    return a / na, b / nb, ncc, na


def _ngf_dissimilarity(x: Tensor, xs: Tensor) -> Tensor:
    """1 - mean over pixels of cos^2(angle between the Sobel gradients of x and x_s), ``(B,)``.

    Each image's edge parameter (gradients below it count as flat) is a tenth of its own mean
    gradient magnitude, so the term depends on neither image's intensity scale."""
    def squared_norm(g: Tensor) -> Tensor:  # |g|^2 + edge parameter^2, per pixel
        eps = (0.1 * g.norm(dim=1).flatten(1).mean(dim=1)).clamp_min(1e-6)
        return g.pow(2).sum(dim=1) + eps.pow(2)[:, None, None]

    gx, gs = sobel(x, "replicate"), sobel(xs, "replicate")
    cos2 = (gx * gs).sum(dim=1).pow(2) / (squared_norm(gx) * squared_norm(gs))
    return 1 - cos2.flatten(1).mean(dim=1)


def _local_ncc_dissimilarity(x: Tensor, xs: Tensor, window: int = 9) -> Tensor:
    """1 - mean over pixels of the NCC of x and x_s in a ``window`` x ``window`` neighbourhood, ``(B,)``."""
    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, window, stride=1, padding=window // 2, count_include_pad=False)

    mx, ms = mean(x), mean(xs)
    cov = mean(x * xs) - mx * ms
    var_x = (mean(x * x) - mx * mx).clamp_min(0)
    var_s = (mean(xs * xs) - ms * ms).clamp_min(0)
    ncc = cov / (var_x * var_s + 1e-6).sqrt()
    return 1 - ncc.flatten(1).mean(dim=1)


def distance(x: Tensor, xs: Tensor, masks: Tensor, opts: HarmonizeOptions) -> Tensor:
    """D(x, x_s) per slice, ``(B,)``, with the resolution-scaled weights of :func:`step_weights`."""
    w1, w2 = step_weights(x, opts)
    if opts.structure == "ngf":
        term = _ngf_dissimilarity(x, xs)
    elif opts.structure == "local_ncc":
        term = _local_ncc_dissimilarity(x, xs)
    elif opts.structure == "ncc":
        term = 1 - _ncc_parts(x, xs, opts.ncc)[2][:, 0]
    else:
        raise ValueError(f"structure must be 'ncc', 'ngf' or 'local_ncc', not {opts.structure!r}")
    return w1 * term + w2 * (masks * sobel(x)).abs().flatten(1).sum(dim=1)


def step_weights(x: Tensor, opts: HarmonizeOptions) -> tuple[float, float]:
    """b1, b2 rescaled from 144x176 to this slice size, so a step moves pixels by the same amount.

    The NCC gradient per pixel scales as 1 / #pixels; the L1 gradient does not.
    """
    return opts.b1 * (x.shape[-2] * x.shape[-1]) / _REF_PIXELS, opts.b2


def distance_grad(x: Tensor, xs: Tensor, masks: Tensor, opts: HarmonizeOptions) -> Tensor:
    """dD/dx ``(B, 1, H, W)`` in closed form (no autograd, so usable under inference_mode).

    d NCC / dx = (b_hat - NCC a_hat) / |a| (already zero-mean for Pearson);
    d |M G x|_1 / dx = G^T (M sign(G x)).
    The NGF and local-NCC terms are differentiated by autograd (their closed forms are long and
    gain nothing: they are not on the publication's path), outside inference mode.
    """
    if opts.structure != "ncc":
        with torch.inference_mode(False), torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(distance(xg, xs.clone(), masks.clone(), opts).sum(), xg)
        return grad
    w1, w2 = step_weights(x, opts)
    a_hat, b_hat, ncc, na = _ncc_parts(x, xs, opts.ncc)
    g_ncc = ((b_hat - ncc * a_hat) / na).view_as(x)
    g_l1 = F.conv_transpose2d(masks * torch.sign(sobel(x)), _sobel_kernels(x), padding=1)
    return -w1 * g_ncc + w2 * g_l1


def initial_image(flow: SliceFlow, xs: Tensor, position: Tensor, opts: HarmonizeOptions) -> Tensor:
    """x_0: the target template at the slice position, the source itself, the source after N4 bias
    correction and histogram matching to the target, or a constant 0.5 inside it."""
    if opts.init == "standardized":
        from medgap.harmonize.baselines import n4_histogram_match

        idx = flow.position_index(position)
        return n4_histogram_match(xs.cpu(), flow.templates[idx].cpu(), flow.quantiles[idx].cpu(),
                                  opts.foreground_threshold).to(xs)
    if opts.init == "template":
        return flow.template_for(position).to(xs.dtype).clone()
    if opts.init == "source":
        return xs.clone()
    if opts.init == "constant":
        return torch.where(xs > opts.foreground_threshold, 0.5, 0.0).to(xs.dtype)
    raise ValueError(f"init must be 'template', 'source', 'constant' or 'standardized', not {opts.init!r}")


def harmonize_batch(flow: SliceFlow, xs: Tensor, position: Tensor, opts: HarmonizeOptions) -> Tensor:
    """Harmonise source slices ``xs (B, 1, H, W)`` in [0, 1] -> ``(B, 1, H, W)`` in [0, 1].

    ``position (B,)``: relative slice positions (for the template). ``flow`` must
    be in eval mode. Deterministic: no random numbers are drawn.
    """
    masks = edge_masks(xs, opts.edge_percentile, opts.foreground_threshold)
    x = initial_image(flow, xs, position, opts)
    if opts.mode == "alternating":
        with torch.inference_mode():
            for _ in range(opts.iterations):
                x_step = x - distance_grad(x, xs, masks, opts)
                z = flow.encode(x_step) * (1.0 - opts.alpha)
                x = flow.decode(z)
                bad = ~torch.isfinite(x).flatten(1).all(dim=1)
                x = torch.where(bad[:, None, None, None], x_step, x)
    elif opts.mode == "autograd":
        x = x.detach().requires_grad_(True)
        optim = torch.optim.Adam([x], lr=opts.lr)
        for _ in range(opts.iterations):
            optim.zero_grad(set_to_none=True)
            z = flow.encode(x)
            loss = distance(x, xs, masks, opts).sum() + opts.alpha * (z**2).sum()
            loss.backward()
            optim.step()
        x = x.detach()
    else:
        raise ValueError(f"mode must be 'alternating' or 'autograd', not {opts.mode!r}")
    # the background of the source stays as it was (the template's outline is not the source's)
    return torch.where(xs > opts.foreground_threshold, x.clamp(0, 1), xs)
