"""Unsupervised sim-to-real transfer of spectral data with a conditional invertible network (cINN).

Python API (the CLI ``medgap transfer ...`` calls exactly these)::

    from medgap.data.spectra import simulate_hsi
    from medgap.transfer import TransferConfig, train, apply_transfer, evaluate

    sim, real = simulate_hsi(20000), simulate_hsi(20000, realism="rich", seed=1)
    train(TransferConfig.from_preset("cpu-small"), (sim, real), "model")
    transferred = apply_transfer("model", sim, "sim2real")
    evaluate(real, sim, {"cinn": transferred}, "report")
"""

from importlib import import_module

__all__ = ["TransferConfig", "train", "apply_transfer", "load_transfer", "evaluate", "SpectralCINN", "ImageCINN"]

_WHERE = {"TransferConfig": "config", "train": "trainer", "apply_transfer": "apply", "load_transfer": "apply",
          "evaluate": "evaluation", "SpectralCINN": "cinn", "ImageCINN": "cinn"}


def __getattr__(name: str):
    # imported on first use: the root CLI imports this package, and `medgap --help` should not
    # pay for torch, scikit-learn and MONAI
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
