"""Entropy models (which return bits) and the one wrapper over a real entropy coder."""
from .factorized import FactorizedPrior
from .gsm import GaussianScaleMixture
from .tabulated import TabulatedDensity

__all__ = ["FactorizedPrior", "GaussianScaleMixture", "TabulatedDensity"]
