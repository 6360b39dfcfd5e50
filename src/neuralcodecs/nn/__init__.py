"""Shared layers of the learned codecs: GDN/IGDN, the gradient-friendly lower bound, recurrent cells and
the binarizer."""
from .bound import LowerBound, lower_bound
from .conv import conv, deconv
from .gdn import GDN
from .recurrent import Binarizer, ConvGRUCell, ConvLSTMCell

__all__ = ["conv", "deconv", "GDN", "LowerBound", "lower_bound", "Binarizer", "ConvGRUCell", "ConvLSTMCell"]
