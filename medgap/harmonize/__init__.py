"""Blind MR harmonisation, trained on target-domain images only.

Train once on your own scanner's volumes, then map volumes from any other scanner to your
scanner's look while keeping their anatomy. Default: Nyul standardisation followed by a
restoration net trained on the target under random scanner-like changes (``method="restore"``);
the publication's flow method is ``method="blindharmony"``.
"""

from importlib import import_module

__all__ = ["Harmonizer", "HarmonizeConfig", "HarmonizeOptions", "METHODS", "SliceFlow", "harmonize_batch",
           "load_training_set", "train"]

_WHERE = {"Harmonizer": "api", "METHODS": "api", "HarmonizeConfig": "config", "SliceFlow": "model",
          "HarmonizeOptions": "optimize", "harmonize_batch": "optimize", "load_training_set": "train", "train": "train"}


def __getattr__(name: str):
    # imported on first use: the root CLI imports this package, and `medgap --help` should not pay for
    # torch (about 2 s here)
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
