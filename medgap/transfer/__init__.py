"""Unsupervised sim-to-real transfer of spectral data with a conditional invertible network (cINN).

Python API (the CLI ``medgap transfer ...`` calls exactly these)::

    from medgap.data.spectra import simulate_hsi
    from medgap.transfer import TransferConfig, train, apply_transfer, evaluate

    sim, real = simulate_hsi(20000), simulate_hsi(20000, realism="rich", seed=1)
    train(sim, real, "model", TransferConfig.from_preset("cpu-small"))
    transferred = apply_transfer("model", sim, "sim2real")
    evaluate(real, sim, {"cinn": transferred}, "report")
"""

from .apply import apply_transfer, load_transfer
from .cinn import ImageCINN, SpectralCINN, count_parameters
from .config import TransferConfig
from .evaluate import evaluate
from .train import train

__all__ = ["TransferConfig", "train", "apply_transfer", "load_transfer", "evaluate", "SpectralCINN", "ImageCINN",
           "count_parameters"]
