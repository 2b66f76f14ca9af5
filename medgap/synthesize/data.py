"""Training data for HA-GAN: NIfTI volumes -> isotropic -> intensity in [-1, 1] -> size^3 cube.

Pipeline per volume (``preprocess``):

1. reorient to RAS (nibabel's closest canonical orientation), so every volume
   and every generated sample shares one axis convention;
2. resample to isotropic voxels (``spacing_mm``, default: the volume's finest
   spacing) -- keeping the anatomy's aspect ratio;
3. intensity: CT is clipped to the HU window (default [-1024, 600]) and mapped
   to [-1, 1]; MR is clipped to percentiles (default 0.5, 99.5) and mapped to
   [-1, 1];
4. pad to a cube (background -1, centred) and resize it to ``size^3``
   (area averaging when shrinking, trilinear when enlarging). The resulting
   isotropic spacing (mm) is recorded.

``VolumeCache`` stores the preprocessed cubes once as a memory-mapped
float16/float32 array, so epochs never re-read NIfTI files.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from medgap.data.sample import load_icbm152, resample_isotropic
from medgap.errors import InputError
from medgap.io import Volume, atomic_path, atomic_write_text, dicom_series, is_volume_file, list_files, read_volume
from medgap.synthesize.config import SynthesizeConfig

__all__ = [
    "ICBM152",
    "HEAD_CT",
    "T1_COHORT",
    "COHORT_HELDOUT",
    "cohort_dataset",
    "Prepared",
    "TrainingSet",
    "cube_affine",
    "find_volumes",
    "preprocess",
    "load_training_set",
    "sample_dataset",
    "Augment",
    "augmented_copies",
    "augmented_pool",
]

# Below this minimum a CT volume holds no air, so it is not in Hounsfield units.
_CT_MIN_HU = -500.0


@dataclass
class Prepared:
    """One preprocessed volume: ``data`` (S, S, S) float32 in [-1, 1], RAS axes.

    spacing_mm: isotropic voxel size of the cube; center_mm: world position (mm)
    of the cube centre (so outputs can be written back in the scanner's space).
    """

    data: np.ndarray
    spacing_mm: float
    center_mm: np.ndarray
    source: str


def cube_affine(size: int, spacing_mm: float, center_mm: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """RAS affine of a size^3 cube of ``spacing_mm`` voxels centred at ``center_mm``."""
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = np.asarray(center_mm, dtype=np.float64) - spacing_mm * (size - 1) / 2.0
    return affine


def find_volumes(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand folders into the volume files they hold (sorted); a DICOM series folder is one volume."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list_files(p, is_volume_file, recursive=True)
            if not found and dicom_series(p):
                found = [p]
            if not found:
                raise InputError(p, "folder holds no volumes (.nii/.nii.gz/.nrrd/.mha or one DICOM series)")
            files += found
        elif not p.exists():
            raise InputError(p, "file does not exist")
        elif not is_volume_file(p):
            raise InputError(p, "not a volume file (.nii, .nii.gz, .nrrd, .nhdr, .mha or .mhd expected)")
        else:
            files.append(p)
    if not files:
        raise InputError(None, "no input volumes given")
    return files


def _canonical(vol: Volume) -> Volume:
    img = nib.as_closest_canonical(nib.Nifti1Image(vol.data, vol.affine))
    return Volume(np.asarray(img.dataobj, dtype=np.float32), img.affine.copy(), None, vol.path)


def _to_cube(data: np.ndarray, size: int) -> np.ndarray:
    side = max(data.shape)
    pads = [((side - s) // 2, side - s - (side - s) // 2) for s in data.shape]
    cube = np.pad(data, pads, mode="constant", constant_values=-1.0)
    t = torch.from_numpy(np.ascontiguousarray(cube))[None, None]
    if side > size:  # area averaging = anti-aliased shrink
        t = F.interpolate(t, size=(size,) * 3, mode="area")
    elif side < size:
        t = F.interpolate(t, size=(size,) * 3, mode="trilinear", align_corners=False)
    return t[0, 0].numpy().astype(np.float32)


# names of the installed data sets load_training_set accepts instead of files
ICBM152 = "icbm152"
HEAD_CT = "head-ct"
T1_COHORT = "t1-cohort"
# the cohort brain kept out of training, for scoring (a real single subject)
COHORT_HELDOUT = "s1"
# the field of view every cohort brain is cut to, centred on its brain (mm per side)
COHORT_FOV_MM = 192.0
# the least a volume needs along every axis to be a 3D image worth resampling to the model cube
MIN_SIZE = (8, 8, 8)


def preprocess(vol: Volume, cfg: SynthesizeConfig, modality: str | None = None) -> Prepared:
    """Turn one volume into a training cube (see the module docstring).

    Raises InputError (naming the file) for a CT that is not in HU, a CT given as MR
    (a folder mixing the two fails on the first volume of the other kind), a constant
    volume, or a volume too thin to be 3D.
    """
    modality = modality or cfg.data.modality
    where = vol.path
    vol.require_size(MIN_SIZE, "HA-GAN (a 3D image)")
    vol = _canonical(vol)
    target = cfg.data.spacing_mm or min(vol.spacing)
    if max(abs(s - target) for s in vol.spacing) > 1e-3 * target:
        vol = resample_isotropic(vol, target, order=1)
    data = vol.data
    if modality == "ct":
        lo_v = float(data.min())
        if lo_v > _CT_MIN_HU:
            raise InputError(
                where,
                f"does not look like a CT in Hounsfield units (minimum {lo_v:.0f} > {_CT_MIN_HU:.0f}: no air); "
                "apply the scanner's rescale slope/intercept first, or use --modality mr",
            )
        lo, hi = cfg.data.ct_window
    else:
        if float(data.min()) <= _CT_MIN_HU:
            raise InputError(where, f"looks like a CT in Hounsfield units (minimum {float(data.min()):.0f}: air), not "
                                    "an MR image; train CT volumes with --modality ct and keep CT and MR apart")
        lo, hi = (float(v) for v in np.percentile(data, cfg.data.mr_percentiles))
        if hi - lo <= 1e-6 * max(1.0, abs(hi)):
            raise InputError(where, "volume is constant (nothing to learn from)")
    data = (np.clip(data, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0
    side = max(data.shape)
    spacing_out = target * side / cfg.model.size
    center = vol.affine[:3, :3] @ ((np.array(data.shape) - 1) / 2.0) + vol.affine[:3, 3]
    return Prepared(_to_cube(data.astype(np.float32), cfg.model.size), float(spacing_out), center,
                    str(where or "<array>"))


@dataclass
class TrainingSet:
    """Preprocessed cubes (N, S, S, S) in [-1, 1] (possibly a read-only memmap) and labels."""

    volumes: np.ndarray
    labels: np.ndarray  # (N,) int64
    label_names: list[str]
    spacing_mm: float
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.volumes)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def batch(self, indices, augment: Augment | None = None) -> torch.Tensor:
        """Cubes ``indices`` as a float32 batch (b, 1, S, S, S), each augmented if ``augment`` is given."""
        vols = [torch.from_numpy(np.asarray(self.volumes[int(i)], dtype=np.float32))[None] for i in indices]
        if augment is not None:
            vols = [augment(v) for v in vols]
        return torch.stack(vols)

    def describe(self) -> dict:
        return {"volumes": len(self), "size": int(self.volumes.shape[1]), "spacing_mm": round(self.spacing_mm, 4),
                "label_names": self.label_names, "sources": self.sources[:20]}


def _cache_key(files: list[Path], labels: list[int], cfg: SynthesizeConfig) -> str:
    h = hashlib.sha256()
    for f, lab in zip(files, labels):
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}|{lab}\n".encode())
    d = cfg.data
    key = {"size": cfg.model.size, "modality": d.modality, "ct_window": d.ct_window,
           "mr_percentiles": d.mr_percentiles, "spacing_mm": d.spacing_mm, "cache_dtype": d.cache_dtype}
    h.update(json.dumps(key, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _assemble(prepared: list[Prepared], labels: list[int], names: list[str]) -> TrainingSet:
    spacing = float(np.median([p.spacing_mm for p in prepared]))
    return TrainingSet(np.stack([p.data for p in prepared]), np.asarray(labels, dtype=np.int64), names, spacing,
                       [p.source for p in prepared])


def _read_cache(arr_path: Path, meta_path: Path, n: int, cfg: SynthesizeConfig) -> TrainingSet | None:
    """The cached training set, or None when it is missing or does not hold what this run needs
    (truncated, another shape or dtype, unreadable metadata): it is then rebuilt from the inputs."""
    if not (arr_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        data = np.load(arr_path, mmap_mode="r", allow_pickle=False)
        ts = TrainingSet(data, np.asarray(meta["labels"], dtype=np.int64), list(meta["label_names"]),
                         float(meta["spacing_mm"]), list(meta["sources"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (data.shape != (n,) + (cfg.model.size,) * 3 or data.dtype != np.dtype(cfg.data.cache_dtype)
            or len(ts.labels) != n):
        return None
    return ts


def load_training_set(
    inputs: Sequence[str | Path],
    cfg: SynthesizeConfig,
    *,
    labels: Sequence[int] | None = None,
    label_names: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> TrainingSet:
    """Read, preprocess and (optionally) cache NIfTI volumes.

    inputs: files and/or folders of .nii/.nii.gz, or one of the installed data sets by name:
    ``["icbm152"]`` (the sample T1 template, :func:`sample_dataset`) or ``["head-ct"]`` (the
    installed real head CT; needs ``modality="ct"``). labels: one int per file (class
    conditioning), default all 0. With ``cache_dir`` the cubes are stored once as
    ``<key>.npy`` (memory-mapped on later runs; key = files, sizes, mtimes, settings).
    Volumes of different shapes and spacings are fine: each is resampled.
    """
    from medgap.training.runtime import track

    if [str(i) for i in inputs] == [ICBM152]:
        return sample_dataset(cfg)
    if [str(i) for i in inputs] == [T1_COHORT]:
        if cfg.data.modality != "mr":
            raise InputError(None, "the installed T1 cohort is MR: train it with --modality mr")
        return cohort_dataset(cfg, progress=progress)
    if [str(i) for i in inputs] == [HEAD_CT]:
        from medgap.data.install import HEAD_CT as head_ct_file
        from medgap.data.install import installed_path

        path = installed_path(head_ct_file)
        if cfg.data.modality != "ct":
            raise InputError(path, "the installed head CT is a CT: train it with --modality ct")
        inputs = [path]
    files = find_volumes(inputs)
    labels = [0] * len(files) if labels is None else [int(v) for v in labels]
    if len(labels) != len(files):
        raise InputError(None, f"{len(labels)} labels for {len(files)} volumes")
    if min(labels) < 0:
        raise InputError(None, f"labels must be >= 0, got {min(labels)}")
    names = list(label_names) if label_names else [str(i) for i in range(max(labels) + 1)]
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        key = _cache_key(files, labels, cfg)
        arr_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
        cached = _read_cache(arr_path, meta_path, len(files), cfg)
        if cached is not None:
            return cached
    prepared, geometry = [], set()
    for f in track(files, description="preprocessing", disable=not progress):
        vol = read_volume(f)
        geometry.add((vol.shape, tuple(round(s, 3) for s in vol.spacing), vol.orientation))
        prepared.append(preprocess(vol, cfg))
    ts = _assemble(prepared, labels, names)
    if len(geometry) > 1:
        _say_resampled(geometry, len(files), cfg.model.size, ts.spacing_mm)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(arr_path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, ts.volumes.astype(cfg.data.cache_dtype), allow_pickle=False)
        atomic_write_text(meta_path, json.dumps({"labels": ts.labels.tolist(), "label_names": ts.label_names,
                                                 "spacing_mm": ts.spacing_mm, "sources": ts.sources}))
        ts.volumes = np.load(arr_path, mmap_mode="r", allow_pickle=False)
    return ts


def _say_resampled(geometry: set, n: int, size: int, spacing_mm: float) -> None:
    """Warn that volumes of several sizes, spacings or orientations were brought onto one grid."""
    shapes, spacings, orientations = ({g[i] for g in geometry} for i in range(3))
    kinds = [f"{len(v)} {what}" for v, what in ((shapes, "sizes"), (spacings, "spacings"),
                                                (orientations, "orientations")) if len(v) > 1]
    warnings.warn(f"{n} volumes of {', '.join(kinds)}: each was reoriented to RAS, resampled to isotropic voxels "
                  f"and fitted into one {size}^3 cube ({spacing_mm:.2f} mm voxels, the median)", stacklevel=3)


def sample_dataset(cfg: SynthesizeConfig, resolution_mm: float = 2.0) -> TrainingSet:
    """The offline ICBM152 template as a (tiny) training set: T1, GM and WM maps (labels 0, 1, 2).

    One average brain: with augmentation it shows the mechanics of training, not
    a population a GAN can learn real variability from. Unconditional configs
    train on the T1 only.
    """
    brain = load_icbm152(resolution_mm)
    mr = cfg.replace(data={"modality": "mr", "spacing_mm": None})
    if not cfg.model.conditional:
        return _assemble([preprocess(brain.t1, mr)], [0], ["t1"])
    maps = [brain.t1, brain.gm, brain.wm]
    return _assemble([preprocess(v, mr) for v in maps], [0, 1, 2], ["t1", "gm", "wm"])


def _brain_box(brain) -> Volume:
    """A cohort brain (1 mm isotropic, RAS) cut to a COHORT_FOV_MM cube centred on its brain mask's box
    (zeros where the cube reaches past the image)."""
    vol = _canonical(brain.t1)
    if max(abs(s - 1.0) for s in vol.spacing) > 1e-3:
        vol = resample_isotropic(vol, 1.0, order=1)
    inside = np.argwhere(vol.data > 0)
    centre = np.round((inside.min(0) + inside.max(0)) / 2.0).astype(int)
    side = int(round(COHORT_FOV_MM / vol.spacing[0]))
    start = centre - side // 2
    cube = np.zeros((side,) * 3, np.float32)
    src = tuple(slice(max(0, a), min(n, a + side)) for a, n in zip(start, vol.shape))
    dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, start))
    cube[dst] = vol.data[src]
    affine = vol.affine.copy()
    affine[:3, 3] = vol.affine[:3, :3] @ start + vol.affine[:3, 3]
    return Volume(cube, affine, None, vol.path)


def cohort_dataset(cfg: SynthesizeConfig, split: str = "train", progress: bool = False) -> TrainingSet:
    """The real T1 mini-cohort that installs offline, on one grid: ``split="train"`` the five training
    brains (ICBM 2009a and 2009c, FSL's MNI152, SRI24, Colin 27), ``"heldout"`` the real subject kept
    out for scoring (pycortex's S1), ``"all"`` the six.

    Every brain is skull-stripped and in one intensity look (:mod:`medgap.data.cohort`), cut to a
    COHORT_FOV_MM cube centred on its brain at 1 mm and shrunk to ``cfg.model.size`` (64: 3 mm voxels), so
    the brains keep their real sizes and differ in anatomy only. Four are population averages and two
    are single subjects: a small cohort, for what a GAN can learn from six brains.
    """
    from medgap.data.cohort import HELDOUT, TRAINING, load_brain
    from medgap.training.runtime import track

    names = {"train": TRAINING + HELDOUT, "heldout": [COHORT_HELDOUT],
             "all": TRAINING + HELDOUT + [COHORT_HELDOUT]}[split]
    mr = cfg.replace(data={"modality": "mr", "spacing_mm": None})
    prepared = [preprocess(_brain_box(load_brain(n)), mr) for n in track(names, description="T1 cohort",
                                                                          disable=not progress)]
    for p, n in zip(prepared, names):
        p.source = f"{T1_COHORT}:{n}"
    return _assemble(prepared, [0] * len(names), ["t1"])


class Augment:
    """Random spatial and intensity augmentation of a cube in [-1, 1] (MONAI transforms).

    Affine (rotation +-0.1 rad, scaling +-8 %, translation +-4 % of the side),
    3D elastic deformation (p=0.3), gamma contrast and intensity scaling; the
    result is clipped back to [-1, 1]. Seeded through ``set_random_state``.
    ``intensity=False`` (CT: Hounsfield units are absolute, a gamma would move
    brain tissue out of its window) keeps the spatial part only.
    """

    def __init__(self, size: int, seed: int = 0, intensity: bool = True):
        from monai.transforms import (
            Compose,
            Rand3DElastic,
            RandAdjustContrast,
            RandAffine,
            RandScaleIntensity,
        )

        spatial = [
            RandAffine(prob=0.8, rotate_range=(0.1, 0.1, 0.1), scale_range=(0.08, 0.08, 0.08),
                       translate_range=(0.04 * size,) * 3, padding_mode="zeros"),
            Rand3DElastic(sigma_range=(5, 7), magnitude_range=(0.0, 0.04 * size), prob=0.3, padding_mode="zeros"),
        ]
        intensities = [RandAdjustContrast(prob=0.5, gamma=(0.8, 1.25)), RandScaleIntensity(factors=0.1, prob=0.5)]
        self.transform = Compose(spatial + (intensities if intensity else []))
        self.transform.set_random_state(seed=seed)

    @classmethod
    def for_config(cls, cfg: SynthesizeConfig, seed: int = 0) -> "Augment | None":
        """The augmentation a config trains with (None when ``augment`` is off; spatial only for CT)."""
        return cls(cfg.model.size, seed=seed, intensity=cfg.data.modality != "ct") if cfg.data.augment else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (1, S, S, S) in [-1, 1] -> same shape, augmented."""
        y = (x + 1.0) / 2.0  # background 0, so zero padding is background
        y = self.transform(y)
        y = y.as_tensor() if hasattr(y, "as_tensor") else torch.as_tensor(y)  # drop MONAI metadata
        return (y.clamp(0.0, 1.0) * 2.0 - 1.0).float()


POOL_LIMIT_BYTES = 2 * 2**30


def augmented_pool(data: TrainingSet, count: int, augment: Augment, dtype: str = "float16",
                   progress: bool = False) -> TrainingSet | None:
    """``count`` (at least one per volume) training cubes drawn once: every volume as it is, then
    augmented copies, volume by volume in turn -- so training draws batches without augmenting each
    one (a third of an iteration's time at 64^3 on a CPU). None (with a warning) when the pool would
    take more than 2 GiB: the trainer then augments on the fly."""
    from medgap.training.runtime import track

    n, size = len(data), data.volumes.shape[1]
    count = max(count, n)
    if count * size**3 * np.dtype(dtype).itemsize > POOL_LIMIT_BYTES:
        warnings.warn(f"an augmentation pool of {count} cubes of {size}^3 would exceed 2 GiB: augmenting every "
                      "batch on the fly instead (set data.augment_pool=0 to say so)", stacklevel=2)
        return None
    pool = np.empty((count, size, size, size), dtype=dtype)
    for i in track(range(count), description="augmentation pool", disable=not progress):
        x = data.batch([i % n], augment if i >= n else None)
        pool[i] = x[0, 0].numpy()
    return TrainingSet(pool, data.labels[np.arange(count) % n], data.label_names, data.spacing_mm, data.sources)


def augmented_copies(volume: np.ndarray, n: int, seed: int = 0, intensity: bool = True) -> np.ndarray:
    """n augmented copies (n, S, S, S) of one cube (S, S, S) in [-1, 1] -- a stand-in 'real set'."""
    aug = Augment(volume.shape[0], seed=seed, intensity=intensity)
    x = torch.from_numpy(np.asarray(volume, dtype=np.float32))[None]
    return np.stack([aug(x)[0].numpy() for _ in range(n)])
