"""QCoDeS instrument drivers for labnr (installed as ``labnr.drivers``)."""

from labnr.drivers.identity import Identity, IdentityError, confirm_identity, confirm_loaded
from labnr.drivers.resilience import InstrumentFault, RetryPolicy

__all__ = [
    "Identity",
    "IdentityError",
    "InstrumentFault",
    "RetryPolicy",
    "confirm_identity",
    "confirm_loaded",
]
