"""medgap: close the domain gap in medical imaging with generative models."""

__version__ = "0.1.0"
