"""Rohde & Schwarz SGS100A: QCoDeS's driver with labnr's identity check and query hygiene.

Everything the source does is QCoDeS's
:class:`qcodes.instrument_drivers.rohde_schwarz.RohdeSchwarzSGS100A`; this
thin subclass only puts :class:`~labnr.drivers.visa_guard.GuardedVisaInstrument`
under it, so that the instrument answering at the address is confirmed to be
an SGS100A (and, with ``serial=``, that one) before anything is written, and
no reply that arrived after its timeout answers a later query. Use it in
station files::

    pump_ab:
      type: labnr.drivers.sgs100a.RohdeSchwarzSGS100A
      address: TCPIP::192.168.1.20::inst0::INSTR
      init: {serial: "110787"}      # optional
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A as _QCoDeSSGS100A

from labnr.drivers.identity import SGS100A, Identity
from labnr.drivers.visa_guard import GuardedVisaInstrument

if TYPE_CHECKING:
    from qcodes.instrument import VisaInstrumentKWArgs
    from typing_extensions import Unpack

__all__ = ["RohdeSchwarzSGS100A"]


class RohdeSchwarzSGS100A(_QCoDeSSGS100A, GuardedVisaInstrument):
    """QCoDeS's SGS100A driver, identity-checked on connect (see the module doc).

    Parameters
    ----------
    name : str
        Instrument name.
    address : str
        VISA resource.
    serial : str, optional
        Expected serial (the part after ``/`` of the ``*IDN?`` serial field
        is enough); None: not checked.
    **kwargs
        :class:`~qcodes.instrument.VisaInstrument` arguments.
    """

    identity: ClassVar[Identity] = SGS100A

    def __init__(
        self,
        name: str,
        address: str,
        *,
        serial: str | None = None,
        **kwargs: Unpack[VisaInstrumentKWArgs],
    ) -> None:
        # QCoDeS's __init__ forwards its kwargs to GuardedVisaInstrument.__init__
        super().__init__(name, address, serial=serial, **kwargs)  # type: ignore[call-arg]
