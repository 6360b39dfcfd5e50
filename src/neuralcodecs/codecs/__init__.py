"""One module per method; importing them fills the registry."""
from . import classical, fmm  # noqa: F401
from . import balle2017, balle2017_pq, balle2018, coconet, minnen2018, prakash2017, jiang2017, theis2017, toderici2016, toderici2017  # noqa: F401
