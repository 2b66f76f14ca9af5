"""HA-GAN: hierarchical amortized 3D GAN that generates and encodes high-resolution CT/MR volumes.

Networks in :mod:`.model`, bounded-memory generation in :mod:`.slabwise`, data in
:mod:`.data`, training in :mod:`.train`, inference in :mod:`.api`, evaluation in
:mod:`.evaluate`, the full-resolution baseline in :mod:`.baseline`.
"""

from medgap.synthesize.api import Synthesizer
from medgap.synthesize.config import SynthesizeConfig
from medgap.synthesize.model import HAGAN, Architecture

__all__ = ["Synthesizer", "SynthesizeConfig", "HAGAN", "Architecture"]
