"""Blind MR harmonisation, trained on target-domain images only.

Train once on your own scanner's volumes, then map volumes from any other scanner to your
scanner's look while keeping their anatomy. Default: Nyul standardisation followed by a
restoration net trained on the target under random scanner-like changes (``method="restore"``);
the publication's flow method is ``method="blindharmony"``.
"""

from medgap.harmonize.api import METHODS, Harmonizer
from medgap.harmonize.config import HarmonizeConfig
from medgap.harmonize.model import SliceFlow
from medgap.harmonize.optimize import HarmonizeOptions, harmonize_batch
from medgap.harmonize.train import load_training_set, train

__all__ = ["Harmonizer", "HarmonizeConfig", "HarmonizeOptions", "METHODS", "SliceFlow", "harmonize_batch",
           "load_training_set", "train"]
