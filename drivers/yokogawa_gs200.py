"""Yokogawa GS200: QCoDeS's driver with labnr's identity check and query hygiene.

QCoDeS's :class:`qcodes.instrument_drivers.yokogawa.YokogawaGS200` asks the
source a dozen questions while it builds its parameters (``:SOUR:FUNC?``,
``*OPT?``, ...). This thin subclass puts
:class:`~labnr.drivers.visa_guard.GuardedVisaInstrument` right above
``VisaInstrument`` in the MRO, so ``*IDN?`` is confirmed (YOKOGAWA GS2xx, and
the serial when given) as soon as the connection opens, before QCoDeS's
``__init__`` sends anything else; a wrong instrument is closed untouched.
:class:`labnr.drivers.flux_gs200.GS200FluxBias` connects through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from qcodes.instrument_drivers.yokogawa import YokogawaGS200 as _QCoDeSGS200

from labnr.drivers.identity import GS200_FAMILY, Identity
from labnr.drivers.visa_guard import GuardedVisaInstrument

if TYPE_CHECKING:
    from qcodes.instrument import VisaInstrumentKWArgs
    from typing_extensions import Unpack

__all__ = ["YokogawaGS200"]


class YokogawaGS200(_QCoDeSGS200, GuardedVisaInstrument):
    """QCoDeS's GS200 driver, identity-checked on connect (see the module doc).

    Parameters
    ----------
    name : str
        Instrument name.
    address : str
        VISA resource.
    serial : str, optional
        Expected serial (``*IDN?`` third field); None: not checked.
    **kwargs
        :class:`~qcodes.instrument.VisaInstrument` arguments.
    """

    identity: ClassVar[Identity] = GS200_FAMILY

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
