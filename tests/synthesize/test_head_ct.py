"""The real head CT installed by `make setup` (Debian invesalius-examples): HU, geometry, CLI alias."""

import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from medgap.data.install import HEAD_CT, data_dir

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt: the head CT cannot be installed")


def test_installed_head_ct_is_in_hounsfield_units():
    img = nib.load(str(data_dir() / HEAD_CT))
    assert img.shape == (256, 256, 108)
    assert np.allclose(img.header.get_zooms(), (0.957, 0.957, 1.5), atol=1e-3)
    hu = np.asarray(img.dataobj)
    assert hu.min() == -1024 and hu.max() > 2000  # air and dense bone
    brain = hu[96:160, 96:160, 50:60]
    assert 15 < np.median(brain) < 60  # brain tissue, not bone or air


def test_head_ct_trains_as_ct_only(tmp_path):
    from medgap.synthesize.config import SynthesizeConfig
    from medgap.synthesize.data import load_training_set

    cfg = SynthesizeConfig.from_preset("cpu-small", overrides=["model.size=32", "data.modality=ct"])
    ts = load_training_set([data_dir() / HEAD_CT], cfg, progress=False)
    assert ts.volumes.shape == (1, 32, 32, 32) and ts.volumes.min() == -1.0
    done = subprocess.run([sys.executable, "-m", "medgap", "synthesize", "train", "head-ct", "--out",
                           str(tmp_path / "m")], capture_output=True, text=True)
    assert done.returncode == 2 and "--modality ct" in done.stderr and not (tmp_path / "m").exists()
