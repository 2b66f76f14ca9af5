"""Transfer between two real labs, scored as a user would: a classifier trained on the transferred
source, tested on spectra of the target lab as measured.

The target lab is split by subject: one half is the unlabelled target data the transfer is trained
with, the other (held-out subjects, with their labels) is where the classifier is tested and where
realism is measured (MMD^2, and how well a classifier tells transferred source from target: a
two-sample test, 0.5 = indistinguishable). ``oracle`` trains the classifier on the first half's true
labels: the ceiling of any transfer. Used by ``bench_transfer_skin`` and the demo.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from medgap.io import SpectraSet
from medgap.metrics import mmd2_unbiased

__all__ = ["split_target", "without_labels", "downstream_accuracy", "realism", "transfer_source"]

def split_target(target: SpectraSet, seed: int, test_fraction: float = 0.5) -> tuple[SpectraSet, SpectraSet]:
    """(the half of the subjects a transfer may see, the held-out subjects), both with their labels:
    train the transfer on :func:`without_labels` of the first, the oracle on the first itself."""
    groups = target.groups if target.groups is not None else np.arange(len(target))
    train, test = next(GroupShuffleSplit(1, test_size=test_fraction, random_state=seed).split(target.spectra,
                                                                                               groups=groups))
    return target.subset(train), target.subset(test)


def without_labels(data: SpectraSet, groups: bool = True) -> SpectraSet:
    """``data`` as a user's unlabelled recordings (subject ids kept unless ``groups=False``)."""
    return SpectraSet(data.spectra, data.wavelengths, None, None, data.groups if groups else None, data.path)


def downstream_accuracy(train: SpectraSet, test: SpectraSet, seed: int, trees: int = 200) -> float:
    """Balanced accuracy on ``test`` of a random forest trained on ``train`` (spectra and, where the
    file has them, weights as written)."""
    forest = RandomForestClassifier(trees, random_state=seed, n_jobs=-1).fit(train.spectra, train.labels,
                                                                             sample_weight=train.weights)
    return float(balanced_accuracy_score(test.labels, forest.predict(test.spectra)))


def realism(transferred: SpectraSet, test: SpectraSet, seed: int, max_samples: int = 1000) -> dict:
    """MMD^2 (median bandwidth, channels standardised by the target) and the balanced accuracy of a
    classifier telling ``transferred`` from the target's held-out subjects (3-fold CV, subjects kept
    together; 0.5 = indistinguishable)."""
    rng = np.random.default_rng(seed)
    pick_a, pick_b = rng.permutation(len(transferred))[:max_samples], rng.permutation(len(test))[:max_samples]
    a, b = transferred.spectra[pick_a], test.spectra[pick_b]
    mean, std = b.mean(0), np.where(b.std(0) > 0, b.std(0), 1.0)
    mmd2 = mmd2_unbiased((a - mean) / std, (b - mean) / std)
    x = np.concatenate([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))].astype(int)
    subjects = [d.groups[p] if d.groups is not None else p for d, p in ((transferred, pick_a), (test, pick_b))]
    groups = np.unique(np.r_[subjects[0].astype(str), ["t" + str(g) for g in subjects[1]]], return_inverse=True)[1]
    scores = []
    for tr, te in StratifiedGroupKFold(3, shuffle=True, random_state=seed).split(x, y, groups):
        clf = RandomForestClassifier(100, random_state=seed, n_jobs=-1).fit(x[tr], y[tr])
        scores.append(balanced_accuracy_score(y[te], clf.predict(x[te])))
    return {"mmd2": float(mmd2), "two_sample_accuracy": float(np.mean(scores))}


def transfer_source(source: SpectraSet, target_unlabelled: SpectraSet, overrides: list[str], seed: int,
                    preset: str = "cpu-small") -> tuple[SpectraSet, float]:
    """Train a transfer (``preset`` + ``overrides``) from ``source`` to the unlabelled target and
    apply it to ``source``; returns (transferred source, seconds of training + transfer)."""
    from medgap.transfer.apply import apply_transfer
    from medgap.transfer.config import TransferConfig
    from medgap.transfer.trainer import train

    cfg = TransferConfig.from_preset(preset, overrides=[*overrides, f"train.seed={seed}"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        start = time.perf_counter()
        train(cfg, (source, target_unlabelled), folder, device="cpu", progress=False)
        out = apply_transfer(folder, source, device="cpu")
        return out, time.perf_counter() - start
