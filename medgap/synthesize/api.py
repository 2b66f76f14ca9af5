"""Using a trained HA-GAN: sample, encode, reconstruct, interpolate.

>>> from medgap.synthesize import Synthesizer
>>> syn = Synthesizer.load("my-hagan/")
>>> paths = syn.save_samples("samples/", n=4, seed=0)        # NIfTI, correct affine
>>> z, recon = syn.encode("subject.nii.gz")                   # z: (latent_dim,)
>>> frames = syn.interpolate("a.nii.gz", "b.nii.gz", steps=5)  # (5, S, S, S)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medgap.errors import InputError, ModelFolderError
from medgap.io import Volume, read_volume, write_nifti
from medgap.modelio import load_model, load_weights_into
from medgap.outputs import staged_output_folder
from medgap.synthesize.config import SynthesizeConfig
from medgap.synthesize.data import Prepared, cube_affine, preprocess
from medgap.synthesize.model import HAGAN, Architecture
from medgap.synthesize.slabwise import generate_slabwise
from medgap.training.runtime import resolve_device

__all__ = ["Synthesizer"]

METHOD = "synthesize"


@dataclass
class Synthesizer:
    """A trained HA-GAN with its preprocessing settings.

    spacing_mm: voxel size (mm, isotropic) of generated volumes; label_names: the
    classes of a conditional model (``[]``/one entry when unconditional).
    """

    model: HAGAN
    config: SynthesizeConfig
    spacing_mm: float
    label_names: list[str]
    device: torch.device = torch.device("cpu")
    latent_prior: dict[str, torch.Tensor] | None = None  # mean/std (and basis) of z; None: N(0, I)

    @property
    def arch(self) -> Architecture:
        return self.model.arch

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto") -> "Synthesizer":
        saved = load_model(folder, method=METHOD)
        cfg = SynthesizeConfig.load_json(saved.config)
        extras = saved.info.get("extras", {})
        try:
            arch = Architecture(**extras["architecture"])
            model = HAGAN(arch)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFolderError(folder, f"config.json lacks a valid 'architecture' entry ({exc})") from exc
        for name in ("generator", "encoder_high", "encoder_global", "discriminator"):
            if name in saved.weights:
                load_weights_into(getattr(model, name), saved.weights[name], Path(folder) / f"{name}.safetensors")
            elif name != "discriminator":
                raise ModelFolderError(folder, f"{name}.safetensors is missing")
        prior = None
        if extras.get("latent_prior", "normal") != "normal":
            prior = saved.weights.get("latent_prior")
            shape = (arch.latent_dim,)
            if prior is None or any(tuple(prior.get(k, torch.empty(0)).shape) != shape for k in ("mean", "std")):
                raise ModelFolderError(folder, f"latent_prior.safetensors is missing or lacks mean/std of shape {shape}")
            basis = prior.get("basis")
            if basis is not None and (basis.ndim != 2 or basis.shape[1] != arch.latent_dim or len(basis) < 2):
                raise ModelFolderError(folder, f"latent_prior.safetensors: basis of shape {tuple(basis.shape)}, "
                                               f"expected (n >= 2, {arch.latent_dim})")
            prior = {k: prior[k].float() for k in ("mean", "std", "basis") if k in prior}
        dev = resolve_device(device)
        return cls(model.to(dev).eval(), cfg, float(extras.get("spacing_mm", 1.0)), list(extras.get("label_names", [])),
                   dev, prior)

    # ------------------------------------------------------------------ sampling
    def _labels(self, label: int | None, n: int) -> torch.Tensor | None:
        k = self.arch.num_classes
        if k == 0:
            if label not in (None, 0):
                raise InputError(None, f"--label {label}: this model is unconditional (no classes were trained)")
            return None
        if label is None:
            raise InputError(None, f"this model is conditional: give --label in 0..{k - 1} ({', '.join(self.label_names)})")
        if not 0 <= label < k:
            raise InputError(None, f"--label {label} is outside the trained classes 0..{k - 1} ({', '.join(self.label_names)})")
        return torch.full((n,), int(label), dtype=torch.long, device=self.device)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                 max_memory_gb: float | None = None) -> np.ndarray:
        """Volumes (B, S, S, S) in [-1, 1] from z (B, latent_dim), via slab-wise G^H."""
        budget = None if max_memory_gb is None else max_memory_gb * 2**30
        out = generate_slabwise(self.model.generator, z.to(self.device), labels, max_memory_bytes=budget)
        return out[:, 0].numpy()

    def sample(self, n: int, seed: int = 0, label: int | None = None, max_memory_gb: float | None = None) -> np.ndarray:
        """n new volumes (n, S, S, S) in [-1, 1] from the model's latent prior."""
        if n < 1:
            raise InputError(None, f"--n must be >= 1, got {n}")
        labels = self._labels(label, n)
        return self.generate(self.sample_latents(n, seed), labels, max_memory_gb)

    def sample_latents(self, n: int, seed: int = 0) -> torch.Tensor:
        """(n, latent_dim) codes: N(0, I), or the Gaussian fitted to training codes (``latent_prior``
        ``encoded``: their full covariance; ``encoded-diagonal`` or a folder without a basis: per dimension)."""
        draws = torch.Generator().manual_seed(seed)
        prior = self.latent_prior
        if prior is not None and "basis" in prior:
            return prior["mean"] + torch.randn(n, len(prior["basis"]), generator=draws) @ prior["basis"]
        z = torch.randn(n, self.arch.latent_dim, generator=draws)
        if prior is not None:
            z = prior["mean"] + prior["std"] * z
        return z

    def affine(self, center_mm: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
        return cube_affine(self.arch.size, self.spacing_mm, center_mm)

    def save_samples(self, out_dir: str | Path, n: int, seed: int = 0, label: int | None = None,
                     max_memory_gb: float | None = None, overwrite: bool = False) -> list[Path]:
        """Write ``sample_000.nii.gz`` ... (RAS, isotropic ``spacing_mm`` voxels, values in [-1, 1]).

        All files appear together at the end; names already in ``out_dir`` are refused unless
        ``overwrite`` (and then only files an earlier medgap command wrote there are replaced).
        """
        names = [f"sample_{i:03d}.nii.gz" for i in range(max(int(n), 0))]
        with staged_output_folder(out_dir, overwrite=overwrite, names=names) as staging:
            vols = self.sample(n, seed, label, max_memory_gb)
            for name, v in zip(names, vols):
                write_nifti(staging / name, v, affine=self.affine())
        return [Path(out_dir) / name for name in names]

    # ------------------------------------------------------------------ encoding
    def prepare(self, volume: str | Path | Volume) -> Prepared:
        """Preprocess a volume exactly as the training data was."""
        vol = read_volume(volume) if not isinstance(volume, Volume) else volume
        return preprocess(vol, self.config)

    @torch.no_grad()
    def encode(self, volume: str | Path | Volume | Prepared, label: int | None = None,
               reconstruct: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """z (latent_dim,) of a volume, and its reconstruction G(z) (S, S, S) if asked.

        Conditional models reconstruct with ``label`` (default 0).
        """
        labels = self._labels(0 if label is None and self.arch.num_classes else label, 1)
        prep = volume if isinstance(volume, Prepared) else self.prepare(volume)
        x = torch.from_numpy(np.ascontiguousarray(prep.data))[None, None].to(self.device)
        z = self.model.encode(x)
        rec = None
        if reconstruct:
            rec = self.generate(z, labels)[0]
        return z[0].cpu().numpy(), rec

    def encode_to_files(self, volume: str | Path, z_out: str | Path, recon_out: str | Path | None = None,
                        label: int | None = None, series: str | None = None) -> tuple[Path, Path | None]:
        """Write z as .npy and (optionally) the reconstruction as NIfTI in the input's world position."""
        from medgap.io import atomic_path

        from medgap.outputs import check_output_file

        z_out = check_output_file(z_out, (volume,), suffixes=(".npy",))
        if recon_out is not None:
            recon_out = check_output_file(recon_out, (volume,), suffixes=(".nii", ".nii.gz"))
            if recon_out.resolve() == z_out.resolve():
                raise InputError(recon_out, "--reconstruction and --out name the same file")
        self._labels(0 if label is None and self.arch.num_classes else label, 1)  # a wrong --label before any work
        prep = self.prepare(read_volume(volume, series=series))
        z, rec = self.encode(prep, label, reconstruct=recon_out is not None)
        with atomic_path(z_out) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, z.astype(np.float32), allow_pickle=False)
        rec_path = None
        if recon_out is not None:
            rec_path = write_nifti(recon_out, rec, affine=cube_affine(self.arch.size, prep.spacing_mm, prep.center_mm))
        return z_out, rec_path

    @torch.no_grad()
    def interpolate(self, a: str | Path | Volume, b: str | Path | Volume, steps: int = 5,
                    label: int | None = None) -> np.ndarray:
        """Volumes (steps, S, S, S) along the straight line between the codes of a and b."""
        if steps < 2:
            raise InputError(None, f"steps must be >= 2, got {steps}")
        za, _ = self.encode(a, label, reconstruct=False)
        zb, _ = self.encode(b, label, reconstruct=False)
        t = torch.linspace(0, 1, steps)[:, None]
        z = (1 - t) * torch.from_numpy(za)[None] + t * torch.from_numpy(zb)[None]
        labels = self._labels(0 if label is None else label, steps) if self.arch.num_classes else None
        return self.generate(z, labels)
