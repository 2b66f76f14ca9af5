"""One rule decides how many threads a run uses (medgap.training.threads)."""

from __future__ import annotations

import pytest

from medgap.errors import ConfigError
from medgap.training.threads import available_cpus, choose_threads


def _cgroup(folder, text):
    folder.mkdir()
    (folder / "cpu.max").write_text(text)
    return folder


def test_the_cgroup_quota_caps_the_visible_cores(tmp_path):
    unlimited = available_cpus(_cgroup(tmp_path / "a", "max 100000"))
    assert available_cpus(_cgroup(tmp_path / "b", "150000 100000")) == min(2, unlimited)  # 1.5 CPUs -> 2 at most
    assert available_cpus(_cgroup(tmp_path / "c", "50000 100000")) == 1
    assert available_cpus(tmp_path / "missing") == unlimited


def test_threads_follow_the_option_then_omp_then_the_cpus_shared_by_torchrun(tmp_path):
    root = _cgroup(tmp_path / "q", "800000 100000")  # 8 CPUs of quota
    cpus = available_cpus(root)
    assert choose_threads(3, {"OMP_NUM_THREADS": "5"}, root) == 3
    assert choose_threads(None, {"OMP_NUM_THREADS": "5"}, root) == 5
    assert choose_threads(None, {}, root) == cpus
    assert choose_threads(None, {"LOCAL_WORLD_SIZE": "2"}, root) == max(1, cpus // 2)
    assert choose_threads(None, {"LOCAL_WORLD_SIZE": "64"}, root) == 1
    with pytest.raises(ConfigError, match="threads"):
        choose_threads(0)
