"""Real skin spectra of 11 labs (ISSA): the reader, bad spreadsheets, labs as labelled sets, and the
class-aware transfer that works on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medgap.cli import app
from medgap.data.skin import BODY_LOCATIONS, SHARED_LOCATIONS, load_archive, read_issa, skin_lab
from medgap.errors import InputError
from medgap.io import SpectraSet, read_spectra
from medgap.transfer.data import fit_stats
from medgap.transfer.labels import estimate_labels

runner = CliRunner()
WL = list(range(360, 750, 10))


def _sheet(path, records, wavelengths=WL, sheet="ISSA"):
    """A spreadsheet in the ISSA layout: wavelengths in row 12 from column N, records from row 13."""
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = sheet
    for _ in range(11):
        ws.append([None])
    ws.append(list("ABCDEFGHIJKL") + [None] + wavelengths)
    for rec in records:
        ws.append(rec)
    book.save(path)
    return path


def _record(number, origin=1, subject=1, location=1, level=30.0, start=400, end=700):
    values = [level + 0.05 * (w - 400) if start <= w <= end else None for w in WL]
    return [number, origin, subject, "CA", "F", 2, location, "SP", "SCI", start, end, 10, None] + values


def test_installed_archive_is_the_published_one():
    archive = load_archive()
    assert len(archive) == 15256 and archive.spectra.shape[1] == 31
    assert sorted(set(archive.origin.tolist())) == list(range(1, 12))
    assert len({(o, s) for o, s in zip(archive.origin, archive.subject)}) == 2107
    assert np.all(archive.spectra > 0) and np.all(archive.spectra < 100)  # % reflectance
    lab = skin_lab(3, archive=archive)
    assert lab.label_names == SHARED_LOCATIONS and len(lab) == 887
    assert len(np.unique(lab.groups)) == 149 and set(np.unique(lab.labels)) == set(range(6))


def test_reader_cuts_to_400_700_drops_exact_duplicates_and_names_bad_rows(tmp_path):
    good = _sheet(tmp_path / "good.xlsx", [_record(1, start=360, end=740), _record(2, location=2),
                                           _record(2, location=2)])
    archive, warnings = read_issa(good)
    assert len(archive) == 2 and archive.wavelengths[0] == 400 and archive.wavelengths[-1] == 700
    assert any("400-700 nm" in w for w in warnings) and any("duplicate" in w for w in warnings)
    assert archive.spectra[0, 0] == pytest.approx(30.0)

    gap = _record(3)
    gap[13 + WL.index(550)] = None
    cases = {
        "no reflectance value at 550 nm": _sheet(tmp_path / "nan.xlsx", [_record(1), gap]),
        "row 14: record number 1 is used twice": _sheet(tmp_path / "dup.xlsx", [_record(1), _record(1, level=40)]),
        "no sheet 'ISSA'": _sheet(tmp_path / "sheet.xlsx", [_record(1)], sheet="Data"),
        "no column for 660 nm": _sheet(tmp_path / "short.xlsx", [_record(1)], wavelengths=WL[:30]),
        "body location 13 is not 1-12": _sheet(tmp_path / "loc.xlsx", [_record(1, location=13)]),
        "negative reflectance": _sheet(tmp_path / "neg.xlsx", [_record(1, level=-50)]),
    }
    for message, path in cases.items():
        with pytest.raises(InputError, match=message) as err:
            read_issa(path)
        assert str(path) in str(err.value)
    (tmp_path / "not.xlsx").write_bytes(b"plain text")
    with pytest.raises(InputError, match="cannot read as an .xlsx"):
        read_issa(tmp_path / "not.xlsx")


def test_skin_lab_command_writes_a_labelled_set_and_refuses_bad_requests(tmp_path):
    sheet = _sheet(tmp_path / "a.xlsx", [_record(i, origin=1 + i % 2, subject=i // 2, location=1 + i % 3)
                                         for i in range(1, 13)])
    out = tmp_path / "lab1.npz"
    result = runner.invoke(app, ["transfer", "skin-lab", "1", "--out", str(out), "--archive", str(sheet),
                                 "--location", "back of hand", "--location", "cheek bone"])
    assert result.exit_code == 0, result.output
    data = read_spectra(out)
    assert data.label_names == ["back of hand", "cheek bone"] and set(data.labels) == {0, 1}
    for args, message in [(["7"], "no records of origin 7"), (["1", "--location", "elbow"], "no body location")]:
        result = runner.invoke(app, ["transfer", "skin-lab", *args, "--out", str(tmp_path / "x.npz"),
                                     "--archive", str(sheet)])
        assert isinstance(result.exception, InputError) and message in str(result.exception)
    assert not (tmp_path / "x.npz").exists()
    assert BODY_LOCATIONS.index("cheek bone") == 2


def _two_labs(rng, n_subjects=60, k=4, shift=1.5):
    """Two 'labs' whose classes move differently (class-dependent shift), each subject measured once
    at every site; the target also differs by a global gain."""
    centres = rng.normal(0, 2.0, (k, 5))
    def lab(offset, gain, first_subject):
        labels = np.tile(np.arange(k), n_subjects)
        groups = np.repeat(np.arange(n_subjects) + first_subject, k)
        skin = rng.normal(0, 1.0, (n_subjects, 5))[groups - first_subject]  # a subject's own tone
        x = centres[labels] + offset[labels] + 0.6 * skin + rng.normal(0, 0.5, (len(labels), 5))
        return SpectraSet(np.exp(0.2 * x).astype(np.float32) * gain, np.arange(5.0) * 10 + 400, labels,
                          [f"c{i}" for i in range(k)], groups)
    source = lab(np.zeros((k, 5)), 1.0, 0)
    target = lab(rng.normal(0, shift, (k, 5)), 1.7, 1000)
    return source, target


def test_estimated_labels_beat_single_spectrum_em_with_subjects(rng):
    source, target = _two_labs(rng)
    s, t = fit_stats(source, True), fit_stats(target, True)
    z_s = s.normalize(torch.from_numpy(source.spectra)).numpy()
    z_t = t.normalize(torch.from_numpy(target.spectra)).numpy()
    free = estimate_labels(z_s, source.labels, z_t, 4, components=5)
    joint = estimate_labels(z_s, source.labels, z_t, 4, groups=target.groups, components=5)
    accuracy = lambda est: float(np.mean(est.labels == target.labels))  # noqa: E731
    assert accuracy(joint) > accuracy(free) and accuracy(joint) > 0.8
    for g in np.unique(target.groups):  # each subject's sites go to distinct classes
        assert len(set(joint.labels[target.groups == g])) == 4
    assert joint.prevalence.sum() == pytest.approx(1.0)


def test_class_aligned_transfer_keeps_brightness_and_moves_each_class_onto_its_own(tmp_path, rng):
    from medgap.transfer.apply import apply_transfer
    from medgap.transfer.config import TransferConfig
    from medgap.transfer.trainer import train

    source, target = _two_labs(rng)
    unlabelled = SpectraSet(target.spectra, target.wavelengths, None, None, target.groups)
    out = {}
    for align in ("global", "class"):
        cfg = TransferConfig.from_preset("cpu-small", overrides=[f"train.align={align}", "method=coral"])
        train(cfg, (source, unlabelled), tmp_path / align, progress=False)
        out[align] = apply_transfer(tmp_path / align, source)
    # classes that really move differently between the labs: reverse validation keeps the full class-wise map
    saved = json.loads((tmp_path / "class" / "config.json").read_text())["extras"]
    assert saved["class_alignment_strength"] == 1.0 and saved["global_moments_matched"] is False  # align=class
    assert set(saved["class_alignment_scores"]) == {"1.0", "0.5", "0.0"}
    norms = np.linalg.norm(out["class"].spectra, axis=1)
    assert norms.std() / norms.mean() > 0.05  # brightness kept, not reset to one norm

    def class_error(data):  # distance of each class mean from the target's same class
        return np.mean([np.linalg.norm(data.spectra[data.labels == c].mean(0) - target.spectra[target.labels == c].mean(0))
                        for c in range(4)])
    assert class_error(out["class"]) < 0.5 * class_error(out["global"])
    # spectra without labels are moved as their most likely class: mostly the same result
    blind = apply_transfer(tmp_path / "class", SpectraSet(source.spectra, source.wavelengths))
    same = np.isclose(blind.spectra, out["class"].spectra, rtol=1e-4).all(1)
    assert blind.labels is None and same.mean() > 0.6


def test_the_subject_design_is_read_from_the_labelled_source():
    from medgap.transfer.labels import subject_design

    sites = np.tile(np.arange(6), 50)
    subjects = np.repeat(np.arange(50), 6)
    assert subject_design(sites, subjects, 6) == "distinct"  # every subject measured once per site
    assert subject_design(np.repeat(np.arange(50) % 3, 6), subjects, 3) == "shared"  # a class per subject
    batches = np.arange(3000) // 1000  # simulation batches hold every class many times
    assert subject_design(np.random.default_rng(0).integers(0, 10, 3000), batches, 10) is None
    assert subject_design(sites, None, 6) is None
    real = skin_lab(1)  # a real lab, with a few repeated sites
    assert subject_design(real.labels, real.groups, 6) == "distinct"


def test_subjects_of_one_class_keep_one_class(rng):
    k, n_subjects = 3, 40
    centres = rng.normal(0, 3.0, (k, 4))
    labels = np.repeat(np.arange(n_subjects) % k, 5)
    groups = np.repeat(np.arange(n_subjects), 5)
    z = centres[labels] + rng.normal(0, 2.0, (len(labels), 4))
    joint = estimate_labels(z, labels, z + 0.1, k, groups=groups, design="shared", components=4)
    for g in np.unique(groups):
        assert len(set(joint.labels[groups == g])) == 1
    free = estimate_labels(z, labels, z + 0.1, k, components=4)
    assert np.mean(joint.labels == labels) > np.mean(free.labels == labels)


def test_two_layer_skin_simulation_darkens_with_melanin_and_keeps_one_type_per_subject():
    from medgap.data.spectra.skin import SKIN_TYPES, simulate_skin
    from medgap.transfer.labels import subject_design

    sim = simulate_skin(120, seed=3)
    assert sim.spectra.shape == (720, 26) and sim.label_names == SKIN_TYPES
    assert np.all(sim.spectra > 4.0) and np.all(sim.spectra < 100.0)  # above the 4 % specular floor
    blue = [np.median(sim.spectra[sim.labels == k, 0]) for k in range(3)]
    assert blue[0] > blue[1] > blue[2]  # melanin absorbs most at short wavelengths
    red_over_blue = sim.spectra[:, -1] / sim.spectra[:, 0]
    assert np.median(red_over_blue[sim.labels == 2]) > np.median(red_over_blue[sim.labels == 0])
    assert subject_design(sim.labels, sim.groups, 3) == "shared"
    with pytest.raises(InputError, match="450, 1000"):
        simulate_skin(2, wavelengths=np.arange(400.0, 701.0, 10.0))


def test_interlab_protocol_keeps_subjects_apart_and_measures_realism():
    from medgap.transfer.interlab import downstream_accuracy, realism, split_target, without_labels

    lab = skin_lab(9)
    known, test = split_target(lab, seed=0)
    assert not set(known.groups) & set(test.groups) and len(known) + len(test) == len(lab)
    blind = without_labels(known)
    assert blind.labels is None and blind.label_names is None and np.array_equal(blind.groups, known.groups)
    assert without_labels(known, groups=False).groups is None
    assert downstream_accuracy(known, test, seed=0) > 0.4  # same lab: well above chance (1/6)
    same, other = realism(known, test, seed=0), realism(skin_lab(3), test, seed=0)
    assert same["two_sample_accuracy"] < 0.65 < other["two_sample_accuracy"]
    assert same["mmd2"] < other["mmd2"]


def _lab_effect_or_subject_noise(rng, lab_effect: float, subject_noise: float, k: int = 4, d: int = 5):
    """Source classes around ``centres``; a target of two subjects whose classes sit ``lab_effect`` away
    (the same for both subjects: a real lab difference) plus ``subject_noise`` (each subject's own)."""
    centres = rng.normal(0, 2.0, (k, d))
    y_s = np.repeat(np.arange(k), 200)
    z_s = centres[y_s] + rng.normal(0, 1.0, (len(y_s), d))
    lab = rng.normal(0, lab_effect, (k, d))
    parts, labels, groups = [], [], []
    for g in range(2):
        y = np.repeat(np.arange(k), 100)
        own = rng.normal(0, subject_noise, (k, d))
        parts.append(centres[y] + lab[y] + own[y] + rng.normal(0, 1.0, (len(y), d)))
        labels.append(y)
        groups.append(np.full(len(y), g))
    return z_s, y_s, np.concatenate(parts), np.concatenate(labels), np.concatenate(groups)


def test_alignment_strength_follows_what_holds_for_other_subjects(rng):
    from medgap.transfer.labels import alignment_strength, shrink_moments

    source = (np.zeros((2, 3)), np.repeat(np.eye(3)[None], 2, 0))
    target = (np.full((2, 3), 2.0), np.repeat(4.0 * np.eye(3)[None], 2, 0))
    assert np.allclose(shrink_moments(source, target, 0.0)[0], 0.0) and np.allclose(shrink_moments(source, target, 1.0)[1], target[1])
    assert np.allclose(shrink_moments(source, target, 0.5)[0], 1.0) and np.allclose(shrink_moments(source, target, 0.5)[1], 2.5 * np.eye(3))

    def choose(lab_effect, subject_noise):
        z_s, y_s, z_t, y_t, groups = _lab_effect_or_subject_noise(rng, lab_effect, subject_noise)
        return alignment_strength(z_s, y_s, z_t, y_t, z_t, lambda z: z, 4, groups=groups, trees=30)

    strength, scores = choose(lab_effect=2.0, subject_noise=0.0)  # classes moved by the lab: align class-wise
    assert strength == 1.0 and scores[1.0] > scores[0.0] + 0.1
    strength, scores = choose(lab_effect=0.0, subject_noise=2.0)  # one subject's classes mislead about the other's
    assert strength < 1.0 and max(scores.values()) > scores[1.0] + 0.05


def test_class_moments_carry_each_class_correlations_across(rng):
    from medgap.transfer.labels import class_moments, from_class, within_class

    # class 0 of the target is correlated along (1, 1), class 1 along (1, -1); the source's are round
    n = 4000
    y = np.repeat([0, 1], n // 2)
    z_s = rng.normal(0, 1.0, (n, 2)) + np.where(y[:, None] == 0, -3.0, 3.0)
    shared = rng.normal(0, 1.0, n)
    z_t = np.stack([shared, np.where(y == 0, shared, -shared)], 1) + 0.3 * rng.normal(0, 1.0, (n, 2))
    source, target = class_moments(z_s, y, 2, shrink=0.0), class_moments(z_t, y, 2, shrink=0.0)
    u = within_class(z_s, y, source)
    assert np.allclose(np.cov(u[y == 0], rowvar=False), np.eye(2), atol=1e-6)
    mapped = from_class(u, y, target)
    for c in (0, 1):
        assert np.allclose(np.cov(mapped[y == c], rowvar=False), np.cov(z_t[y == c], rowvar=False), atol=1e-6)
        assert np.allclose(mapped[y == c].mean(0), z_t[y == c].mean(0), atol=1e-9)
    assert np.corrcoef(mapped[y == 0].T)[0, 1] > 0.9 and np.corrcoef(mapped[y == 1].T)[0, 1] < -0.9
    # shrinkage mixes in the pooled covariance; a class with too few samples takes the pooled moments
    few = class_moments(z_t, np.r_[np.zeros(n - 3, int), np.ones(3, int)], 2)
    assert np.allclose(few[1][1] @ few[1][1], np.cov(z_t, rowvar=False), atol=1e-9)


def test_class_statistics_of_older_model_folders_still_load(rng):
    from medgap.transfer.data import DomainStats

    k, c = 3, 4
    old = {"real_mean": torch.zeros(c), "real_std": torch.ones(c), "real_scale": torch.tensor(1.0), "real_l2": torch.tensor(0.0),
           "real_class_mean": torch.randn(k, c), "real_class_std": torch.rand(k, c) + 0.5}
    stats = DomainStats.from_tensors(old, "real")  # written with per-channel class stds
    assert torch.allclose(stats.class_root, torch.diag_embed(old["real_class_std"]))
    z, labels = torch.randn(50, c), torch.randint(0, k, (50,))
    per_channel = (z - old["real_class_mean"][labels]) / old["real_class_std"][labels]
    assert torch.allclose(stats.normalize(z, labels), per_channel, atol=1e-5)  # the same map as before
    assert torch.allclose(stats.denormalize(stats.normalize(z, labels), labels), z, atol=1e-5)
    broken = {**old, "real_class_std": -old["real_class_std"]}
    with pytest.raises(ValueError, match="class_std"):
        DomainStats.from_tensors(broken, "real")
    singular = {**{key: v for key, v in old.items() if key != "real_class_std"}, "real_class_root": torch.zeros(k, c, c)}
    with pytest.raises(ValueError, match="invertible"):
        DomainStats.from_tensors(singular, "real")


def test_matching_the_global_moments_keeps_the_classes_apart(rng):
    from medgap.transfer.labels import class_moments, from_class, match_global, within_class

    y = np.repeat([0, 1, 2], [600, 300, 100])
    z = rng.normal(0, 1.0, (len(y), 3)) * [1.0, 0.5, 2.0] + np.array([[-2, 0, 1], [0, 1, 0], [3, -1, 0]])[y]
    moments = class_moments(z, y, 3)  # shrunk: the map's output is not exactly the modelled mixture
    target_mean, a = np.array([1.0, -1.0, 0.5]), rng.normal(0, 1.0, (3, 3))
    target_cov = a @ a.T + np.eye(3)
    u = within_class(z, y, moments)
    matched = match_global(moments, from_class(u, y, moments), target_mean, target_cov)
    out = from_class(u, y, matched)
    assert np.allclose(out.mean(0), target_mean) and np.allclose(np.cov(out, rowvar=False), target_cov)
    # one affine map for all classes: how far apart the classes are, in each one's own spread, is kept

    def separation(m, r):
        return [[(m[j] - m[k]) @ np.linalg.inv(r[k].T @ r[k]) @ (m[j] - m[k]) for k in range(3)] for j in range(3)]
    assert np.allclose(separation(*matched), separation(*moments), rtol=1e-6)


def test_demo_brings_the_skin_simulation_towards_real_spectra(tmp_path):
    from medgap.transfer.demo import _skin_sim_part

    metrics, line = _skin_sim_part(tmp_path, quick=True)
    assert metrics["skin_sim_cINN_two_sample_accuracy"] < metrics["skin_sim_simulation_two_sample_accuracy"] - 0.1
    assert metrics["skin_sim_cINN_mmd2"] < 0.2 * metrics["skin_sim_simulation_mmd2"]
    assert "cINN" in line and (tmp_path / "skin_sim_to_real.png").stat().st_size > 10_000
    for name in ("skin_sim", "skin_sim_cinn", "skin_real_test"):
        assert read_spectra(tmp_path / "data" / f"{name}.npz").wavelengths[0] == 450


def _shifted(data: SpectraSet, keep: list[int]) -> SpectraSet:
    return data.subset(np.flatnonzero(np.isin(data.labels, keep)))


def test_a_target_lab_without_some_classes_is_recognised_and_weighted(tmp_path, rng):
    """Label shift: the target measured two of the four sites. The estimate keeps only those two,
    the transferred classes the target lacks weigh 0, and a classifier trained on the written file
    with its weights predicts only the target's classes."""
    from sklearn.ensemble import RandomForestClassifier

    from medgap.transfer.apply import apply_transfer
    from medgap.transfer.config import TransferConfig
    from medgap.transfer.labels import subject_design
    from medgap.transfer.trainer import train

    source, target = _two_labs(rng, shift=0.5)
    target = _shifted(target, [0, 2])
    s, t = fit_stats(source, True), fit_stats(target, True)
    z_s = s.normalize(torch.from_numpy(source.spectra)).numpy()
    z_t = t.normalize(torch.from_numpy(target.spectra)).numpy()
    design = subject_design(source.labels, source.groups, 4)
    est = estimate_labels(z_s, source.labels, z_t, 4, groups=target.groups, design=design, components=5)
    assert est.prevalence[[1, 3]].sum() == 0 and est.prevalence[[0, 2]] == pytest.approx([0.5, 0.5], abs=0.05)
    assert np.mean(est.labels == target.labels) > 0.9

    unlabelled = SpectraSet(target.spectra, target.wavelengths, None, None, target.groups)
    cfg = TransferConfig.from_preset("cpu-small", overrides=["method=coral", "train.align=class+global"])
    train(cfg, (source, unlabelled), tmp_path / "m", progress=False)
    out = apply_transfer(tmp_path / "m", source)
    assert out.weights is not None and out.weights.mean() == pytest.approx(1.0)
    assert (out.weights[np.isin(out.labels, [1, 3])] == 0).all() and (out.weights[np.isin(out.labels, [0, 2])] > 0).all()
    forest = RandomForestClassifier(50, random_state=0).fit(out.spectra, out.labels, sample_weight=out.weights)
    assert set(np.unique(forest.predict(target.spectra))) <= {0, 2}
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["extras"]["target_class_shares"]
    assert saved["c1"] == 0 and saved["c3"] == 0
    # the weights travel with the file; without the model's estimate (real2sim, closed form global) none
    from medgap.io import write_spectra
    write_spectra(tmp_path / "out.npz", out)
    assert np.array_equal(read_spectra(tmp_path / "out.npz").weights, out.weights)
    assert apply_transfer(tmp_path / "m", target, direction="real2sim").weights is None
    # the command line says so
    write_spectra(tmp_path / "source.npz", source)
    result = runner.invoke(app, ["transfer", "apply", str(tmp_path / "m"), str(tmp_path / "source.npz"),
                                 "--out", str(tmp_path / "cli.npz")])
    assert result.exit_code == 0, result.output
    assert "weights" in result.output and "lack c1, c3" in result.output
    assert np.allclose(read_spectra(tmp_path / "cli.npz").weights, out.weights)


def test_sample_weights_give_the_target_class_mix():
    from medgap.transfer.labels import sample_weights

    labels = np.array([0, 0, 1, 2])
    w = sample_weights(np.array([0.5, 0.5, 0.0]), labels)
    assert w.mean() == pytest.approx(1.0) and w[3] == 0
    shares = np.bincount(labels, weights=w, minlength=3) / w.sum()
    assert shares == pytest.approx([0.5, 0.5, 0.0])


def test_bad_weights_in_a_spectra_file_are_refused_naming_the_file(tmp_path):
    good = {"spectra": np.ones((3, 4), np.float32), "wavelengths": np.arange(4.0) * 10 + 400}
    for bad, words in ((np.array([1.0, -1.0, 1.0]), "negative"), (np.ones(2), "one entry per spectrum"),
                       (np.array([1.0, np.nan, 1.0]), "'weights'")):
        path = tmp_path / "w.npz"
        np.savez(path, **good, weights=bad)
        with pytest.raises(InputError, match=words) as err:
            read_spectra(path)
        assert "w.npz" in str(err.value)


def test_a_class_the_target_lacks_does_not_pull_the_global_match(rng):
    from medgap.transfer.labels import class_moments, from_class, match_global, within_class

    y = np.repeat([0, 1, 2], [300, 300, 300])
    z = rng.normal(0, 1.0, (len(y), 3)) + np.array([[-2, 0, 1], [0, 1, 0], [6, -3, 0]])[y]
    moments = class_moments(z, y, 3)
    target_mean, target_cov = np.array([1.0, -1.0, 0.5]), np.diag([2.0, 1.0, 0.5])
    u = within_class(z, y, moments)
    present = (y != 2).astype(float)
    out = from_class(u, y, match_global(moments, from_class(u, y, moments), target_mean, target_cov, present))
    assert np.allclose(out[y != 2].mean(0), target_mean) and np.allclose(np.cov(out[y != 2], rowvar=False), target_cov)


def test_subjects_with_their_own_subsets_keep_every_class(rng):
    """Each target subject measured a random two of the four sites: no lab-wide set of classes exists,
    and the search keeps them all (the description-length check)."""
    from medgap.transfer.labels import subject_design

    source, target = _two_labs(rng, shift=0.5)
    keep = np.concatenate([rng.choice(np.flatnonzero(target.groups == g), 2, replace=False)
                           for g in np.unique(target.groups)])
    target = target.subset(np.sort(keep))
    s, t = fit_stats(source, True), fit_stats(target, True)
    z_s = s.normalize(torch.from_numpy(source.spectra)).numpy()
    z_t = t.normalize(torch.from_numpy(target.spectra)).numpy()
    design = subject_design(source.labels, source.groups, 4)
    est = estimate_labels(z_s, source.labels, z_t, 4, groups=target.groups, design=design, components=5)
    assert (est.prevalence > 0.1).all()


def test_transfer_evaluate_trains_with_the_files_weights(rng):
    from medgap.transfer.evaluation import _downstream

    x = rng.normal(size=(300, 5)).astype(np.float32) + 2.0
    y = np.repeat([0, 1, 2], 100)
    x[:, 0] += 1.5 * y
    wl = np.arange(5.0) * 10 + 400
    weighted = SpectraSet(x, wl, y, ["a", "b", "c"], weights=np.where(y == 2, 0.0, 1.5))
    _, cm = _downstream(weighted, SpectraSet(x, wl, y, ["a", "b", "c"]), 3, seed=0, max_train=1000)
    assert cm[:, 2].sum() == 0  # a class of weight 0 is never predicted
    _, cm = _downstream(SpectraSet(x, wl, y, ["a", "b", "c"]), SpectraSet(x, wl, y, ["a", "b", "c"]), 3, 0, 1000)
    assert cm[2, 2] > 0.5
