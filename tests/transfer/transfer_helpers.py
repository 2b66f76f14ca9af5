"""Helpers shared by the transfer tests."""

from medgap.io import ImageSet, SpectraSet


def tiny_overrides(epochs: int = 2, modality: str = "hsi") -> list[str]:
    if modality == "hsi":
        return [f"train.epochs={epochs}", "hsi.n_blocks=4", "hsi.n_conditional=3", "hsi.hidden=32",
                "hsi.batch_size=256", "hsi.disc_hidden=32", "train.iterations_per_epoch=3"]
    return [f"train.epochs={epochs}", "pat.blocks_per_scale=[1,1]", "pat.width=8", "pat.disc_dim=4",
            "pat.disc_layers=2", "pat.disc_scales=2", "pat.batch_size=2", "train.iterations_per_epoch=2",
            "baseline.conv_width=4", "baseline.n_res=1"]


def unlabelled(data):
    if isinstance(data, SpectraSet):
        return SpectraSet(data.spectra, data.wavelengths, None, None, data.groups, data.path)
    return ImageSet(data.images, data.wavelengths, None, None, data.path)
