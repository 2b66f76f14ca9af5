"""Read and write the files every medgap method uses, with clear errors and atomic writes.

Formats
-------
* NIfTI volumes (``.nii``, ``.nii.gz``) through nibabel (:mod:`medgap.io.nifti`): a :class:`Volume`
  keeps the voxel array together with the affine (voxel -> world mm) and the header, so that a
  written result lies on exactly the grid of its input.
* NRRD, MetaImage and DICOM series through SimpleITK (:mod:`medgap.io.itk`); :func:`read_volume`
  reads every volume format.
* Spectra ``.npz``: ``spectra`` float (N, C), ``wavelengths`` float (C,) in nm, optional
  ``labels`` int (N,), ``label_names`` (K,), ``groups`` (N,) (subject or image id).
* Spectral images ``.npz``: ``images`` float (N, C, H, W), ``wavelengths`` (C,), optional
  ``segmentation`` int (N, H, W), ``label_names`` (K,)  (:mod:`medgap.io.datasets`).

Every problem with a user's file raises :class:`~medgap.errors.InputError` whose message
starts with the file name. Every write goes to a temporary file in the target folder
that is renamed over the target only once complete (:mod:`medgap.io.atomic`), so a failure
never leaves a partial output behind.
"""

from medgap.io.atomic import (
    atomic_path,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_text,
    output_folder,
    remove_stale_temporaries,
)
from medgap.io.checks import check_finite, list_files
from medgap.io.datasets import ImageSet, SpectraSet, describe_file, read_images, read_spectra, write_images, write_spectra
from medgap.io.itk import dicom_series, is_itk_file, is_volume_file, read_volume
from medgap.io.nifti import Volume, check_geometry, is_nifti, nifti_shape, read_nifti, write_nifti
from medgap.io.npz import load_npz_arrays, read_npy

__all__ = [
    "Volume",
    "read_nifti",
    "write_nifti",
    "SpectraSet",
    "read_spectra",
    "write_spectra",
    "ImageSet",
    "read_images",
    "write_images",
    "atomic_path",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_save_npz",
    "check_finite",
    "check_geometry",
    "describe_file",
    "is_nifti",
    "is_itk_file",
    "load_npz_arrays",
    "read_npy",
    "list_files",
    "output_folder",
    "read_volume",
    "dicom_series",
    "is_volume_file",
    "nifti_shape",
    "remove_stale_temporaries",
]
