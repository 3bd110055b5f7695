"""pmupart: an executable model of the Arm PMU under KVM on arm64.

See DESIGN.md for the layers.  The architecture core is :mod:`pmupart.arch`.
"""

from pmupart.arch import PE, Access, Outcome
from pmupart.errors import PmupartError
from pmupart.machine import Machine

__version__ = "0.1.0"

__all__ = ["PE", "Access", "Machine", "Outcome", "PmupartError", "__version__"]
