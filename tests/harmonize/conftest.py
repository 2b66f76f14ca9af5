from __future__ import annotations

import os

import nibabel as nib
import pytest

from harmonize_helpers import lps_affine, phantom

os.environ.setdefault("MEDGAP_NO_PROGRESS", "1")


@pytest.fixture()
def target_file(tmp_path):
    path = tmp_path / "target.nii.gz"
    nib.save(nib.Nifti1Image(phantom(), lps_affine()), str(path))
    return path


@pytest.fixture()
def source_file(tmp_path):
    path = tmp_path / "source.nii.gz"
    nib.save(nib.Nifti1Image((phantom(seed=1) * 900.0) ** 1.3, lps_affine()), str(path))
    return path
