"""Invertible building blocks and image flows shared by medgap's methods."""

from medgap.flows.blocks import (
    ActNorm,
    ConvResidualNet,
    FlowSequence,
    InvConv1x1,
    InvertibleBlock,
    RQSCoupling,
    Squeeze,
)
from medgap.flows.likelihood import standard_normal_nll
from medgap.flows.multiscale import MultiScaleFlow

__all__ = [
    "ActNorm",
    "ConvResidualNet",
    "FlowSequence",
    "InvConv1x1",
    "InvertibleBlock",
    "MultiScaleFlow",
    "standard_normal_nll",
    "RQSCoupling",
    "Squeeze",
]
