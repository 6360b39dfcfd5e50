"""Shared layers of the learned codecs: GDN/IGDN and the gradient-friendly lower bound."""
from .bound import LowerBound, lower_bound
from .gdn import GDN

__all__ = ["GDN", "LowerBound", "lower_bound"]
