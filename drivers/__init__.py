"""QCoDeS instrument drivers for labnr (installed as ``labnr.drivers``)."""

from labnr.drivers.resilience import InstrumentFault, RetryPolicy

__all__ = ["InstrumentFault", "RetryPolicy"]
