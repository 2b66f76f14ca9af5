"""HA-GAN: hierarchical amortized 3D GAN that generates and encodes high-resolution CT/MR volumes.

Networks in :mod:`.model`, bounded-memory generation in :mod:`.slabwise`, data in
:mod:`.data`, training in :mod:`.train`, inference in :mod:`.api`, evaluation in
:mod:`.evaluate`, the full-resolution baseline in :mod:`.baseline`.
"""

from importlib import import_module

__all__ = ["Synthesizer", "SynthesizeConfig", "HAGAN", "Architecture"]

_WHERE = {"Synthesizer": "api", "SynthesizeConfig": "config", "HAGAN": "model", "Architecture": "model"}


def __getattr__(name: str):
    # imported on first use, like medgap.harmonize and medgap.transfer: `medgap --help` stays free of torch
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
