"""User-facing API: load a trained model folder, harmonise volumes, score images.

    from medgap.harmonize import Harmonizer
    h = Harmonizer.load("my-scanner-model")
    h.apply_file("other_site.nii.gz", "harmonized.nii.gz")          # default: Nyul + restoration net
    h.apply_file("other_site.nii.gz", "bh.nii.gz", method="blindharmony")  # the publication's method
    h.apply_file("other_site.nii.gz", "hm.nii.gz", method="histogram")
    h.score_file("scan.nii.gz")   # bits/dim under the target flow: is it from our scanner?
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from medgap.errors import InputError, ModelFolderError
from medgap.harmonize.baselines import BASELINES
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.data import SliceStack, load_for_harmonize, prepare_volume, restore_volume
from medgap.harmonize.model import SliceFlow
from medgap.harmonize.optimize import HarmonizeOptions, harmonize_batch
from medgap.io import Volume, atomic_write_text, write_nifti
from medgap.modelio import load_model, load_weights_into
from medgap.outputs import check_output_file, json_text
from medgap.training.runtime import resolve_device, track

__all__ = ["Harmonizer", "METHODS", "READY_MODELS", "resolve_model"]

# ready models shipped in medgap/data/models (benchmarks/train_ready_harmonize_model.py trains them):
# name -> folder. A path that exists always wins over a name.
READY_MODELS = {"cohort-t1": "harmonize-cohort-t1"}


def resolve_model(folder: str | Path) -> Path:
    """``folder`` itself, or the shipped model of that name (:data:`READY_MODELS`) where no such path exists."""
    path = Path(folder)
    if not path.exists() and str(folder) in READY_MODELS:
        return Path(__file__).resolve().parent.parent / "data" / "models" / READY_MODELS[str(folder)]
    return path

# one registry: the CLI, evaluation and benchmarks list these. "restore" (the default where the model
# has it) is medgap.harmonize.restore; "blindharmony" is the publication's Eq. 1-2 optimiser.
METHODS = ["restore", "blindharmony", *BASELINES]
# the input checks of harmonize_volume (chosen on Colin 27, the validation subject, with the ready model):
# the correlation of a source's slices with the target's mean slices at the same positions is +0.2 to +0.7
# for a T1 under every change of medgap.harmonize.simulate, -0.04 for WM darker than GM, -0.2 to -0.6 for an
# inverted (T2-like) contrast -- but only -0.05 to -0.3 once half resolution and noise are added, so such a
# source is not always named; a CT in Hounsfield units has air at -1000
CONTRAST_WARNING = -0.15
CT_AIR_HU = -500.0


class Harmonizer:
    """A trained target flow plus its target statistics; harmonises and scores images."""

    def __init__(self, model: SliceFlow, cfg: HarmonizeConfig, device: str | torch.device = "cpu",
                 info: dict | None = None, restorer: torch.nn.Module | None = None):
        self.cfg = cfg
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        from medgap.training.precision import set_precision

        set_precision(self.model, cfg.harmonize.precision, self.device)
        self.restorer = restorer.to(self.device).eval() if restorer is not None else None
        self.info = info or {}
        self.last_gate: float | None = None  # the restore gate's weight for the last volume
        self.last_doubt: float | None = None  # how much the net's corrections of it and its mirror disagree
        self.last_bias: dict | None = None  # the 3D bias stage on the last volume: N4 field spread, weight
        self.last_levelling: dict | None = None  # the slice levelling on the last volume: largest gain change
        self.last_contrast: float | None = None  # the last volume's correlation with the target's mean slices
        self.last_warnings: list[str] = []  # what looked wrong about the last volume (input_warnings)
        self.last_stack: SliceStack | None = None  # the last volume's prepared model-grid slices

    @property
    def default_method(self) -> str:
        """``restore`` when the model folder has the restoration net, else ``blindharmony``."""
        return "restore" if self.restorer is not None else "blindharmony"

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto", overrides: tuple[str, ...] = ()) -> "Harmonizer":
        """Load a model folder written by ``medgap harmonize train``; ``overrides`` change
        optimiser settings (``harmonize.alpha=0.01``); flow settings cannot change. ``folder`` may
        also name a ready model (``"cohort-t1"``: the bundled real T1 cohort's look)."""
        folder = resolve_model(folder)
        saved = load_model(folder, method="harmonize")
        cfg = HarmonizeConfig.load_json(saved.config)
        if overrides:
            from medgap.config import _deep_update, parse_overrides

            from medgap.errors import ConfigError

            changes = parse_overrides(overrides)
            if "flow" in changes:
                raise ConfigError("flow", "the flow of a trained model cannot be changed")
            if "context" in changes.get("restore", {}):
                raise ConfigError("restore.context", "the restoration net of a trained model cannot be changed")
            cfg = HarmonizeConfig.load_json(_deep_update(cfg.to_dict(), changes)).check()
        model = SliceFlow.from_config(cfg.flow, cfg.data.template_bins)
        if "flow" not in saved.weights:
            raise ModelFolderError(folder, "flow.safetensors is not among the folder's weights")
        load_weights_into(model, saved.weights["flow"], Path(folder) / "flow.safetensors")
        restorer = None
        if "restore" in saved.weights:
            from medgap.harmonize.restore import build_restoration_net

            restorer = build_restoration_net(tuple(cfg.restore.channels), cfg.restore.res_units,
                                             cfg.restore.context)
            load_weights_into(restorer, saved.weights["restore"], Path(folder) / "restore.safetensors")
        return cls(model, cfg, device, saved.info, restorer)

    # ------------------------------------------------------------------ slices
    def options(self) -> HarmonizeOptions:
        return self.cfg.harmonize

    def harmonize_slices(self, xs: torch.Tensor, position: torch.Tensor, method: str = "auto",
                         progress: bool = False) -> torch.Tensor:
        """Harmonise model-grid slices ``xs (N, 1, H, W)`` in [0, 1] at relative positions ``(N,)``.

        ``method="auto"``: :attr:`default_method`."""
        method = self.default_method if method == "auto" else method
        self.last_gate = self.last_doubt = None  # set by the restore method only
        if method not in METHODS:
            raise InputError(None, f"unknown method {method!r}; choose from auto, {', '.join(METHODS)}")
        xs = torch.as_tensor(xs, dtype=torch.float32)
        position = torch.as_tensor(position, dtype=torch.float32)
        if method == "restore":
            if self.restorer is None:
                raise InputError(None, "this model folder has no restoration net (trained with restore.steps=0 "
                                       "or by an older medgap): use --method blindharmony or a baseline")
            return self._restore(xs, position)
        if method != "blindharmony":
            idx = self.model.position_index(position)
            fn = BASELINES[method]
            return fn(xs, self.model.templates[idx].cpu(), self.model.quantiles[idx].cpu(),
                      self.cfg.harmonize.foreground_threshold)
        bs = self.cfg.harmonize.batch_slices
        chunks = range(0, len(xs), bs)
        opts = self.options()
        out = []
        for start in track(chunks, total=len(chunks), description="harmonise", disable=not progress):
            x = xs[start:start + bs].to(self.device)
            p = position[start:start + bs].to(self.device)
            out.append(harmonize_batch(self.model, x, p, opts).cpu())
        return torch.cat(out)

    def _restore(self, xs: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """The default method (medgap.harmonize.restore): Nyul standardisation of the slices
        together, then the net's correction, gated by its size."""
        from medgap.harmonize.restore import gated_restore, restore_slices

        r, thr = self.cfg.restore, self.cfg.harmonize.foreground_threshold
        base = self.harmonize_slices(xs, position, "nyul")
        if r.output == "standardized":
            self.last_gate = 0.0
            return base
        if r.output == "network":
            self.last_gate = 1.0
            return restore_slices(self.restorer, base.to(self.device), thr, self.cfg.harmonize.batch_slices,
                                  r.context).cpu()
        r0 = float(self.info.get("extras", {}).get("train", {}).get("restore", {}).get("target_correction", 0.0))
        if r0 <= 0:
            raise ModelFolderError(None, "the model's card has no restore.target_correction: retrain it")
        out, self.last_gate, self.last_doubt = gated_restore(self.restorer, base.to(self.device), r0, *r.gate, thr,
                                                             self.cfg.harmonize.batch_slices, r.context, r.doubt)
        return out.cpu()

    @torch.inference_mode()
    def score_slices(self, xs: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Bits/dim of each slice ``(N,)`` (fixed-seed dequantisation noise: deterministic)."""
        g = torch.Generator().manual_seed(seed)
        xs = torch.as_tensor(xs, dtype=torch.float32)
        out = []
        for start in range(0, len(xs), self.cfg.harmonize.batch_slices):
            x = xs[start:start + self.cfg.harmonize.batch_slices]
            noise = torch.rand(x.shape, generator=g)
            out.append(self.model.bits_per_dim(x.to(self.device), noise.to(self.device)).cpu())
        return torch.cat(out)

    # ------------------------------------------------------------------ volumes
    def prepare(self, volume: Volume, mask: np.ndarray | None = None) -> SliceStack:
        d = self.cfg.data
        return prepare_volume(volume.data, volume.affine, tuple(self.cfg.flow.image_size), mask=mask,
                              normalization=d.normalization, percentiles=d.percentiles,
                              min_foreground=d.min_foreground, path=volume.path)

    def harmonize_volume(self, volume: Volume, mask: np.ndarray | None = None, method: str = "auto",
                         progress: bool = False, detail: str = "keep") -> np.ndarray:
        """Harmonised copy of ``volume.data`` on its own grid; voxels outside the foreground
        (``mask`` or the intensity foreground) and slices without brain are unchanged.
        ``detail``: see :func:`~medgap.harmonize.data.restore_volume` (``"keep"``: the
        model-grid change is added to the source at its own resolution)."""
        if detail not in ("keep", "resample"):
            raise InputError(None, f"detail must be 'keep' or 'resample', not {detail!r}")
        stack = self.last_stack = self.prepare(volume, mask)
        self.last_warnings = self.input_warnings(volume, stack)
        for message in self.last_warnings:
            warnings.warn(f"{volume.path or 'source volume'}: {message}", stacklevel=2)
        slices = self.volume_stage(torch.from_numpy(stack.slices), torch.from_numpy(stack.masks), method)
        out = self.harmonize_slices(slices, torch.from_numpy(stack.position), method, progress)
        return restore_volume(stack, out.numpy(), volume.data, detail)

    def contrast_with_target(self, stack: SliceStack) -> float | None:
        """Correlation of the volume's slices with the target's mean slices at the same positions, over
        the foreground of both: positive for a T1 like the target's (also under intensity changes, bias
        fields, noise), near 0 or below where the contrast runs against the target's (a T2 given as T1);
        None when the two share too little foreground to tell."""
        xs = torch.from_numpy(stack.slices)
        templates = self.model.templates[self.model.position_index(torch.from_numpy(stack.position))].cpu()
        thr = self.cfg.harmonize.foreground_threshold
        both = (xs > thr) & (templates > thr)
        if int(both.sum()) < 100:
            return None
        pair = torch.stack([xs[both].double(), templates[both].double()])
        return float(torch.corrcoef(pair)[0, 1])

    def input_warnings(self, volume: Volume, stack: SliceStack) -> list[str]:
        """What looks wrong about a source volume for this model (also in :meth:`explain`'s notes)."""
        found = []
        data = np.asarray(volume.data)
        air = float(np.mean(data <= CT_AIR_HU)) if data.size else 0.0
        if air >= 0.01:
            found.append(f"{air:.0%} of the voxels are at or below {CT_AIR_HU:.0f}: this looks like a CT in "
                            "Hounsfield units, not an MR image like the target's")
        self.last_contrast = self.contrast_with_target(stack)
        if self.last_contrast is not None and self.last_contrast < CONTRAST_WARNING:
            found.append(f"the contrast runs against the target's (correlation with the target's mean slices "
                         f"{self.last_contrast:+.2f}; a T1 gives +0.2 to +0.7): a T2, FLAIR or another "
                         "sequence given as a T1? The result is not a T1 of the target's look")
        return found

    def volume_stage(self, slices: torch.Tensor, masks: torch.Tensor, method: str = "auto") -> torch.Tensor:
        """What the default does to consecutive slices of one volume before the slice-wise part: each
        slice's brightness levelled along z (``restore.level_slices``, :func:`~medgap.harmonize.baselines.level_slices`),
        then :meth:`correct_bias_3d`. Unchanged for other methods."""
        used = self.default_method if method == "auto" else method
        self.last_levelling = None
        if used == "restore" and self.cfg.restore.level_slices:
            from medgap.harmonize.baselines import level_slices

            thr = self.cfg.harmonize.foreground_threshold
            levelled = level_slices(slices, thr)
            fg = slices > thr
            gains = [float(levelled[i][fg[i]].mean() / slices[i][fg[i]].mean()) for i in range(len(slices))
                     if int(fg[i].sum()) >= 50]
            self.last_levelling = {"largest_gain_change": round(max((abs(g - 1) for g in gains), default=0.0), 4),
                                   "slices_changed": sum(abs(g - 1) > 1e-3 for g in gains)}
            slices = levelled
        return self.correct_bias_3d(slices, masks, method)

    def correct_bias_3d(self, slices: torch.Tensor, masks: torch.Tensor, method: str = "auto") -> torch.Tensor:
        """Consecutive slices of one volume after the default's 3D bias stage (``restore.bias_correction``):
        N4's field over the whole stack, applied with a weight that grows with its spread
        (``restore.bias_gate``), so an image without such a field is left as it is.
        Unchanged for other methods or with ``none``; :attr:`last_bias` records what was done."""
        used = self.default_method if method == "auto" else method
        self.last_bias = None
        if used != "restore" or self.cfg.restore.bias_correction == "none":
            return slices
        from medgap.harmonize.baselines import n4_log_field, n4_volume

        r = self.cfg.restore
        field = n4_log_field(slices, masks, self.cfg.harmonize.foreground_threshold)
        if field is None:
            return slices
        spread = float(field[0][field[1]].std())
        low, high = r.bias_gate
        weight = float(np.clip((spread - low) / (high - low), 0, 1))
        self.last_bias = {"field_spread": round(spread, 4), "weight": round(weight, 3)}
        return n4_volume(slices, masks, weight=weight, field=field) if weight > 0 else slices

    def apply_file(self, source: str | Path, out: str | Path, method: str = "auto",
                   mask: str | Path | None = None, progress: bool = False, detail: str = "keep",
                   series: str | None = None, report: str | Path | None = None) -> Path:
        """Harmonise a volume (NIfTI, NRRD, MetaImage, DICOM series: ``series`` picks one of a folder's)
        into ``out`` (.nii/.nii.gz, written atomically, input affine/header). ``report``: also write
        what was done, as JSON (:meth:`explain`)."""
        out = check_output_file(out, (source, mask), suffixes=(".nii", ".nii.gz"))
        if report is not None:
            report = check_output_file(report, (source, mask, out), suffixes=(".json",))
        vol, m = load_for_harmonize(source, mask, series)
        result = self.harmonize_volume(vol, m, method, progress, detail)
        written = write_nifti(out, result, like=vol)
        if report is not None:
            atomic_write_text(report, json_text({"source": str(source), "output": str(written),
                                                 **self.explain(vol, m, method, self.last_stack)}, indent=2))
        return written

    def explain(self, volume: Volume, mask: np.ndarray | None = None, method: str = "auto",
                stack: SliceStack | None = None) -> dict:
        """What the last harmonisation of ``volume`` did and how unusual the volume is for this model:
        the method, the restoration net's weight and its disagreement with its mirror image (restore),
        the source's correlation with the target's mean slices and bits/dim under the target flow with
        its z-score against the target's own slices, and notes on what looked wrong
        (:meth:`input_warnings`). The bits/dim alone are a weak judge: an inverted, T2-like contrast of
        Colin 27 scores within one standard deviation of the target's own; the contrast check flags it.
        ``stack``: the volume's prepared slices when at hand (:attr:`last_stack` after :meth:`harmonize_volume`)."""
        stack = self.prepare(volume, mask) if stack is None else stack
        bpd = float(self.score_slices(torch.from_numpy(stack.slices)).mean())
        ref = self.info.get("extras", {}).get("target_bits_per_dim", {})
        z = float((bpd - ref["mean"]) / max(ref["std"], 1e-6)) if ref else None
        used = self.default_method if method == "auto" else method
        notes = list(self.last_warnings)
        if used == "restore" and self.last_gate == 0.0:
            notes.append("the restoration net did not act: nothing for it to correct, or an input unlike its "
                         "training (the result is Nyul's standardisation)")
        if z is not None and z > 10:
            notes.append(f"the source is far from the target look ({z:.0f} target standard deviations in bits/dim): "
                         "check it is the same kind of image (contrast, modality, skull stripping)")
        return {"method": used, "slice_levelling": self.last_levelling, "bias_correction_3d": self.last_bias,
                "restore_weight": self.last_gate, "restore_disagreement": self.last_doubt,
                "contrast_with_target": self.last_contrast,
                "source_bits_per_dim": bpd, "source_z_score": z, "notes": notes}

    def score_file(self, image: str | Path, mask: str | Path | None = None) -> dict:
        """Bits/dim per slice and per volume, and how far that is from the target's own."""
        vol, m = load_for_harmonize(image, mask)
        stack = self.prepare(vol, m)
        bpd = self.score_slices(torch.from_numpy(stack.slices)).numpy()
        ref = self.info.get("extras", {}).get("target_bits_per_dim", {})
        result = {"image": str(image), "bits_per_dim": float(bpd.mean()),
                  "per_slice": {int(z): round(float(b), 4) for z, b in zip(stack.index, bpd)}}
        if ref:
            result["target_bits_per_dim"] = ref
            result["z_score"] = float((bpd.mean() - ref["mean"]) / max(ref["std"], 1e-6))
        return result

    def describe(self) -> dict:
        return {"config": self.cfg.to_dict(), "options": self.options().to_dict(), "info": self.info}
