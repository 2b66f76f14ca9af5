"""Class labels for the unlabelled real domain, estimated so that transfer can align class by class.

A global alignment (standardise, CORAL, or a cINN conditioned on the domain only) moves every class
of the source by the same map; on real skin spectra of two labs that leaves most of the gap to a
target-trained classifier (bench_transfer_skin). Aligning class by class needs the target's labels,
which a user does not have. They are estimated here by expectation-maximisation of a Gaussian
class-conditional model of the real data, started from the source's classes in the shared whitened
space (where the untrained transfer is CORAL):

- E step: posterior class probabilities of each real spectrum (class priors re-estimated, so a
  target lab with other proportions is followed);
- label shift: where the target's subjects hold fewer spectra than the source has classes (a lab
  that measured three of six body sites), the classes it holds are found first
  (:func:`present_classes`) and the others get no spectra; the transferred file then carries
  weights (:func:`sample_weights`) that give a classifier the target's class mix;
- with ``groups`` (subject ids), each subject's spectra are assigned jointly, following the study
  design that the *labelled source* shows (:func:`subject_design`): where its subjects were
  recorded once per class (body sites), a subject with n target spectra holds each class at most
  ceil(n / K) times (a linear assignment on the log-posteriors) -- this takes the estimated labels
  from 44 % to 79 % correct on the development labs (bench_transfer_skin_labels); where every subject of
  the source has one class (a skin type, a diagnosis), all of a subject's spectra get the class
  of highest summed log-posterior; otherwise, or without groups on either side, spectra are
  assigned one by one;
- M step: class means and covariances (shrunk towards the pooled covariance) from the real data.

How far each source class then moves towards its estimated target class is chosen by reverse
validation (:func:`alignment_strength`): a class-wise map is only as good as the target's class
moments, and where a lab's own labelled spectra train a weaker classifier than another lab's
globally aligned ones (origin 1 -> 3 in bench_transfer_skin, seed 0: 48 % globally aligned, 44 % class
by class even with the target's true labels) the full class-wise map loses to the global one.

With ``train.align=class+global`` (the default) the class-wise map's output is then re-matched as a
whole to the target's global mean and covariance (:func:`match_global`): where the source's class mix
is not the target's (a simulation's prior over skin types), the set as a whole would otherwise sit off
the target's mean (bench_transfer_skin_sim).

The model lives in the leading principal components of the real data (``components``), where
class structure is strongest and the covariances are well conditioned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from medgap.transfer.data import symmetric_roots

__all__ = ["LabelEstimate", "estimate_labels", "classes_per_subject", "present_classes", "class_moments",
           "within_class", "from_class", "subject_design", "shrink_moments", "match_global", "sample_weights",
           "alignment_strength", "STRENGTHS"]

# the alignment strengths reverse validation chooses from, preferred in this order on a tie
STRENGTHS = (1.0, 0.5, 0.0)
# present_classes: the fraction of a per-subject choice's description length a lab-wide set of classes
# may lose and still be taken. Development labs (bench_transfer_skin_labels): targets that measured
# three sites on every subject keep their set from 0.7 on; targets whose subjects each had a random
# three of the six sites fall back to all classes up to 0.8.
SUBSET_PRICE = 0.75


@dataclass
class LabelEstimate:
    labels: np.ndarray  # (N,) estimated class of each real sample
    prevalence: np.ndarray  # (K,) estimated class proportions of the real domain
    iterations: int
    design: str | None = None  # how subjects were assumed to hold classes (None: spectra one by one)
    strength: float = 1.0  # how far source classes move to the estimated target classes (0 global, 1 class-wise)
    strength_scores: dict[float, float] | None = None  # reverse-validation score of each candidate strength


def _log_gaussian(z: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(z; mean, cov) for every row of z (N, D)."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, 1e-9, None)
    d = (z - mean) @ vecs / np.sqrt(vals)
    return -0.5 * (np.sum(d * d, axis=1) + np.sum(np.log(vals)) + z.shape[1] * math.log(2 * math.pi))


def _moments(z: np.ndarray, labels: np.ndarray, k: int, pooled: np.ndarray, shrink: float,
             fallback: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    means, covs = np.empty((k, z.shape[1])), np.empty((k, z.shape[1], z.shape[1]))
    for c in range(k):
        zc = z[labels == c]
        if len(zc) > z.shape[1]:
            means[c], covs[c] = zc.mean(0), (1 - shrink) * np.cov(zc, rowvar=False) + shrink * pooled
        elif fallback is not None:  # a class (almost) absent from the real data keeps its source shape
            means[c], covs[c] = fallback[0][c], fallback[1][c]
        else:
            means[c], covs[c] = z.mean(0), pooled
    return means, covs


def _subjects(groups: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(groups, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(groups[order])) + 1)


def subject_design(labels: np.ndarray, groups: np.ndarray | None, n_classes: int,
                   agreement: float = 0.75) -> str | None:
    """How the labelled data's subjects hold their classes: ``"distinct"`` (each recorded once per
    class, as body sites), ``"shared"`` (one class per subject, as a skin type), or None (neither for
    at least ``agreement`` of the subjects with two or more spectra, or no groups)."""
    if groups is None:
        return None
    labels = np.asarray(labels)
    subjects = [labels[m] for m in _subjects(np.asarray(groups)) if len(m) > 1]
    if not subjects:
        return None
    # distinct: no class more often than an even spread allows (ceil(n / K)); shared: one class only
    if np.mean([np.bincount(y).max() <= math.ceil(len(y) / n_classes) for y in subjects]) >= agreement:
        return "distinct"
    if np.mean([len(np.unique(y)) == 1 for y in subjects]) >= agreement:
        return "shared"
    return None


def _assign(log_post: np.ndarray, groups: np.ndarray | None, design: str | None) -> np.ndarray:
    labels = log_post.argmax(1)
    if groups is None or design is None:
        return labels
    k = log_post.shape[1]
    for members in _subjects(groups):
        if len(members) < 2:
            continue
        if design == "shared":
            labels[members] = log_post[members].sum(0).argmax()
            continue
        capacity = math.ceil(len(members) / k)
        cost = -np.repeat(log_post[members], capacity, axis=1)  # column j -> class j // capacity
        rows, cols = linear_sum_assignment(cost)
        labels[members[rows]] = cols // capacity
    return labels


def estimate_labels(z_source: np.ndarray, y_source: np.ndarray, z_target: np.ndarray, n_classes: int,
                    groups: np.ndarray | None = None, iterations: int = 5, components: int = 8,
                    shrink: float = 0.3, design: str | None = "distinct", find_present: bool = True) -> LabelEstimate:
    """Estimate target labels (see the module text). z_*: (N, C) samples in the shared whitened space;
    ``groups``: the target's subject ids; ``design``: how subjects hold classes (:func:`subject_design`
    of the source), used only with ``groups``. Where subjects of a "distinct" design hold fewer
    spectra than there are classes, only the classes :func:`present_classes` finds are used
    (``find_present=False``: all, the ablation of bench_transfer_skin_labels)."""
    z_source, z_target = np.asarray(z_source, np.float64), np.asarray(z_target, np.float64)
    centre = z_target.mean(0)
    _, _, vt = np.linalg.svd(z_target - centre, full_matrices=False)
    basis = vt[:min(components, vt.shape[0])].T
    zt = (z_target - centre) @ basis
    pooled = np.atleast_2d(np.cov(zt, rowvar=False))
    groups = None if groups is None else np.asarray(groups)

    def source_model(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source class Gaussians in the target's space, the source aligned as if it held only ``classes``."""
        zs = (_realign(z_source, np.isin(y_source, classes)) - centre) @ basis
        return _moments(zs, y_source, n_classes, pooled, shrink, None)

    present = np.arange(n_classes)
    if find_present and groups is not None and design == "distinct":
        present = present_classes(source_model, zt, groups, classes_per_subject(groups, n_classes), n_classes)
    source = means, covs = source_model(present)
    prevalence = np.full(n_classes, 1.0 / len(present))
    labels = np.zeros(len(zt), dtype=np.int64)
    for _ in range(max(1, iterations)):
        log_post = np.stack([_log_gaussian(zt, means[c], covs[c]) for c in present], 1) + np.log(prevalence[present])
        labels = present[_assign(log_post, groups, design)]
        counts = np.bincount(labels, minlength=n_classes)
        prevalence = np.where(np.isin(np.arange(n_classes), present), counts + 1.0, 0.0)
        prevalence /= prevalence.sum()
        means, covs = _moments(zt, labels, n_classes, pooled, shrink, source)
    return LabelEstimate(labels, prevalence, max(1, iterations), design if groups is not None else None)


def _realign(z: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """z re-whitened by the mean and covariance of its ``rows`` (unchanged where they are all of z):
    the global alignment the data would get if it held only those samples."""
    if rows.all() or rows.sum() <= z.shape[1]:
        return z
    part = z[rows]
    return (z - part.mean(0)) @ _psd_root(np.atleast_2d(np.cov(part, rowvar=False)), inverse=True)


def classes_per_subject(groups: np.ndarray, n_classes: int, coverage: float = 0.9) -> int:
    """How many classes a subject of a "distinct" study holds: the number of spectra that
    ``coverage`` of the subjects do not exceed (a repeated recording of one subject does not count
    as a protocol), at most ``n_classes``."""
    counts = np.bincount(np.unique(groups, return_inverse=True)[1])
    return int(min(n_classes, max(1, math.ceil(np.quantile(counts, coverage)))))


def present_classes(source_model, zt: np.ndarray, groups: np.ndarray, m: int, n_classes: int) -> np.ndarray:
    """The ``m`` classes a target lab's subjects most likely hold, where each subject was recorded
    once per class (label shift: a lab that measured three of six body sites). Classes are dropped
    one at a time (backward elimination), each time the one whose absence costs the subject-wise
    assignment (:func:`_assign`) the least log-likelihood; ``source_model(classes)`` gives the class
    Gaussians with the source aligned as if it held only those classes (a global alignment of a
    source with six sites onto a target with three would put every class in the wrong place).
    With ``m`` = all classes, all are kept.

    Without this, a subject's three spectra are spread over all six classes: on the development labs
    with targets holding three sites, 45 % of the spectra go to sites never measured and 47 % are
    right; with it, 9 % and 83 % (bench_transfer_skin_labels)."""
    keep = list(range(n_classes))

    def score(classes: list[int]) -> float:
        means, covs = source_model(np.array(classes))
        part = np.stack([_log_gaussian(zt, means[c], covs[c]) for c in classes], 1)
        return float(part[np.arange(len(part)), _assign(part.copy(), groups, "distinct")].sum())

    everything = score(keep)
    while len(keep) > m:
        drop = max(keep, key=lambda c: score([k for k in keep if k != c]))
        keep.remove(drop)
    if len(keep) == n_classes:
        return np.array(keep)
    # one set for the whole lab, or each subject its own m classes? The latter explains the spectra
    # better by construction but costs log C(K, m) nats per subject to say which (a description
    # length); the lab-wide set is kept only where it loses less than ``SUBSET_PRICE`` of that.
    subjects = len(np.unique(groups))
    if everything - score(keep) > SUBSET_PRICE * subjects * math.log(math.comb(n_classes, m)):
        return np.arange(n_classes)
    return np.array(keep)


def _psd_root(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    """The symmetric square root (or its inverse) of a covariance matrix (eigenvalues floored at 1e-9)."""
    return symmetric_roots(cov, floor=1e-9)[0 if inverse else 1]


def class_moments(z: np.ndarray, labels: np.ndarray, n_classes: int, min_count: int = 5,
                  shrink: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean (K, C) and covariance root (K, C, C) of z: the symmetric square root of the class
    covariance shrunk by ``shrink`` towards the pooled covariance of all of z (a class of a few
    spectra stays well conditioned). Classes with fewer than ``min_count`` samples get the domain's
    mean and pooled covariance.

    Full covariances, not per-channel stds: the class-wise map then restores each class's channel
    correlations as CORAL does for the whole domain (bench_transfer_skin, fully class-wise, 3 seeds:
    48.2 +- 0.3 % with per-channel stds, 49.9 +- 1.1 % with full covariances)."""
    z = np.asarray(z, np.float64)
    pooled = np.atleast_2d(np.cov(z, rowvar=False)) if len(z) > 1 else np.eye(z.shape[1])
    means = np.repeat(z.mean(0, keepdims=True) if len(z) else np.zeros((1, z.shape[1])), n_classes, 0)
    roots = np.repeat(_psd_root(pooled)[None], n_classes, 0)
    for c in range(n_classes):
        zc = z[labels == c]
        if len(zc) >= min_count:
            means[c] = zc.mean(0)
            roots[c] = _psd_root((1 - shrink) * np.atleast_2d(np.cov(zc, rowvar=False)) + shrink * pooled)
    return means, roots


def within_class(z: np.ndarray, labels: np.ndarray, moments: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """z (N, C) whitened within its class: (z - mean_k) root_k^-1."""
    means, roots = moments
    out = np.empty_like(z, dtype=np.float64)
    for c in np.unique(labels):
        out[labels == c] = (z[labels == c] - means[c]) @ np.linalg.inv(roots[c])
    return out


def from_class(u: np.ndarray, labels: np.ndarray, moments: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Inverse of :func:`within_class`: u root_k + mean_k."""
    means, roots = moments
    out = np.empty_like(u, dtype=np.float64)
    for c in np.unique(labels):
        out[labels == c] = u[labels == c] @ roots[c] + means[c]
    return out


def shrink_moments(source: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray],
                   strength: float) -> tuple[np.ndarray, np.ndarray]:
    """Class means and covariance roots a fraction ``strength`` of the way from the source's (where a
    global alignment puts each class in the target's whitened space) to the target's estimated ones,
    both linearly (a mix of two positive definite roots stays positive definite). 1: the target's
    (class-wise CORAL); 0: the source's (global CORAL)."""
    (mean_s, root_s), (mean_t, root_t) = source, target
    return mean_s + strength * (mean_t - mean_s), root_s + strength * (root_t - root_s)


def match_global(moments: tuple[np.ndarray, np.ndarray], transferred: np.ndarray, target_mean: np.ndarray,
                 target_cov: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class means and covariance roots moved by one affine map -- CORAL of the class-wise map's
    output ``transferred`` (N, C) as a whole onto the target's global mean and covariance -- so that
    the transferred set matches the target's first two moments, as a global alignment does, even
    where the source's class mix (a simulation's prior) is not the target's. Each class keeps its
    shape relative to the others; the roots are no longer symmetric (root W). ``weights`` (N,): the
    transferred set's moments weighted; 0 for the classes the target lacks, so that they do not pull
    the others (label shift)."""
    means, roots = moments
    transferred = np.asarray(transferred, np.float64)
    cov = np.atleast_2d(np.cov(transferred, rowvar=False, aweights=weights))
    w = _psd_root(cov, inverse=True) @ _psd_root(np.atleast_2d(target_cov))
    return (means - np.average(transferred, axis=0, weights=weights)) @ w + target_mean, roots @ w


def sample_weights(target_shares: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample weights that give labelled data (``labels``, N) the target's class mix
    (``target_shares``, K): the target's share of a sample's class over the data's own, mean 1 --
    importance weights under label shift; 0 for a class the target lacks."""
    labels = np.asarray(labels)
    own = np.bincount(labels, minlength=len(target_shares)) / max(len(labels), 1)
    w = np.asarray(target_shares, np.float64)[labels] / np.maximum(own[labels], 1e-12)
    return w / max(w.mean(), 1e-12)


def alignment_strength(z_source: np.ndarray, y_source: np.ndarray, z_target: np.ndarray, target_labels: np.ndarray,
                       raw_target: np.ndarray, to_raw, n_classes: int, groups: np.ndarray | None = None,
                       candidates: tuple[float, ...] = STRENGTHS, seed: int = 0, trees: int = 100,
                       n_jobs: int | None = None) -> tuple[float, dict[float, float]]:
    """Choose the class-alignment strength by reverse validation on the unlabelled target.

    The target's subjects are split in two folds. For each fold and candidate strength, the source is
    mapped class by class onto the class moments (:func:`shrink_moments`) estimated from the *other*
    fold's spectra and their estimated labels, a random forest is trained on the mapped source in raw
    units (``to_raw``: whitened target space -> raw spectra) and scored (balanced accuracy) against the
    estimated labels of this fold's spectra (``raw_target``, as measured). The estimated labels use
    each subject's study design and are far more often right (79 % on the development labs) than any
    per-spectrum classifier (at most ~52 %), so they can rank the candidates without a true label.
    Returns (the best strength, {strength: mean score}); ties go to the earlier candidate. ``n_jobs``:
    the forest's threads (None: one)."""
    import warnings

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold, KFold

    z_source, z_target = np.asarray(z_source, np.float64), np.asarray(z_target, np.float64)
    if groups is not None and len(np.unique(groups)) >= 2:
        folds = list(GroupKFold(2).split(z_target, groups=groups))
    elif len(z_target) >= 4:
        folds = list(KFold(2, shuffle=True, random_state=seed).split(z_target))
    else:
        return candidates[0], {}
    source = class_moments(z_source, y_source, n_classes)
    u = within_class(z_source, y_source, source)  # each source spectrum within its class
    scores = {float(c): [] for c in candidates}
    for fit, held in folds:
        target = class_moments(z_target[fit], target_labels[fit], n_classes)
        for c in candidates:
            mapped = to_raw(from_class(u, y_source, shrink_moments(source, target, c)))
            forest = RandomForestClassifier(trees, random_state=seed, n_jobs=n_jobs).fit(mapped, y_source)
            with warnings.catch_warnings():  # a fold without some class: scored over the classes it has
                warnings.simplefilter("ignore", UserWarning)
                scores[float(c)].append(balanced_accuracy_score(target_labels[held], forest.predict(raw_target[held])))
    means = {c: float(np.mean(v)) for c, v in scores.items()}
    best = max(means.values())
    return next(c for c in means if means[c] >= best - 1e-12), means
