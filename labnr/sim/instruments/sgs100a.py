"""Emulated Rohde & Schwarz SGS100A SGMA RF source (CW, IQ, pulse modulation).

Speaks everything QCoDeS's ``RohdeSchwarzSGS100A`` uses: frequency, power,
phase, RF output, IQ modulation and impairments, pulse modulation, reference
and LO oscillator routing, trigger connector and operation mode. ``SOURce``
is optional in every header, as on the instrument.

Limits are the instrument's (SGS100A with the 12.75 GHz option): 1 MHz to
12.75 GHz, -120 to +25 dBm, phase -720 to 720 deg. A value out of range
pushes ``-222,"Data out of range"`` and keeps the previous setting. Every
change the device can see (frequency, power, phase, output, IQ state and
impairments) calls ``backend.notify(name)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from labnr.sim.instruments.backend import LabBackend
from labnr.sim.instruments.history import SourceRecorder
from labnr.sim.instruments.scpi import SCPIInstrument

__all__ = ["FREQUENCY_RANGE", "PHASE_RANGE", "POWER_RANGE", "SGS100AEmulator", "SGS100AState"]

#: Frequency range, Hz.
FREQUENCY_RANGE = (1e6, 12.75e9)
#: Power range, dBm.
POWER_RANGE = (-120.0, 25.0)
#: Phase offset range, degrees.
PHASE_RANGE = (-720.0, 720.0)


@dataclass
class SGS100AState:
    """Settings of the emulated SGS100A.

    Attributes
    ----------
    frequency : float
        CW frequency, Hz.
    power : float
        Output level, dBm.
    phase : float
        Phase offset, degrees.
    output : bool
        RF output on.
    iq_state : bool
        IQ modulation on (the output is then the LO times the I/Q inputs).
    iq_impairments : bool
        Whether the impairment corrections below are applied.
    i_offset, q_offset : float
        Carrier leakage of I and Q, percent of peak envelope power.
    iq_gain_imbalance : float
        IQ ratio, dB.
    iq_angle : float
        Quadrature offset, degrees.
    pulse_state : bool
        Pulse modulation on.
    pulse_source, pulse_mode, pulse_polarity, pulse_trigger_mode : str
        Short forms: ``INT``/``EXT``, ``SING``/``DOUB``, ``NORM``/``INV``,
        ``AUTO``/``EXT``/``EGAT``.
    pulse_delay, pulse_double_delay, pulse_double_width, pulse_period, pulse_width : float
        Pulse timing, s.
    pulse_gate_polarity, pulse_ext_impedance, pulse_ext_slope : str
        External trigger settings (``NORM``/``INV``, ``G50``/``G10K``, ``POS``/``NEG``).
    ref_source, lo_source : str
        Reference and LO oscillator source, ``INT`` or ``EXT``.
    ref_lo_output : str
        Signal at the REF/LO OUT connector: ``REF``, ``LO`` or ``OFF``.
    ref_output_frequency, ref_external_frequency : str
        ``10MHZ``, ``100MHZ`` or ``1000MHZ``.
    trigger_connector_mode : str
        ``SVAL``, ``SNV``, ``PVO``, ``PET`` or ``PEMS``.
    operation_mode : str
        ``NORM`` or ``BBBY``.
    """

    frequency: float = 1e9
    power: float = -30.0
    phase: float = 0.0
    output: bool = False
    iq_state: bool = False
    iq_impairments: bool = False
    i_offset: float = 0.0
    q_offset: float = 0.0
    iq_gain_imbalance: float = 0.0
    iq_angle: float = 0.0
    pulse_state: bool = False
    pulse_source: str = "INT"
    pulse_mode: str = "SING"
    pulse_polarity: str = "NORM"
    pulse_trigger_mode: str = "AUTO"
    pulse_delay: float = 0.0
    pulse_double_delay: float = 1e-6
    pulse_double_width: float = 1e-6
    pulse_period: float = 10e-6
    pulse_width: float = 1e-6
    pulse_gate_polarity: str = "NORM"
    pulse_ext_impedance: str = "G50"
    pulse_ext_slope: str = "POS"
    ref_source: str = "INT"
    lo_source: str = "INT"
    ref_lo_output: str = "REF"
    ref_output_frequency: str = "10MHZ"
    ref_external_frequency: str = "10MHZ"
    trigger_connector_mode: str = "SVAL"
    operation_mode: str = "NORM"


_S = "[SOURce]:"
_PULM = _S + "PULM:"
_IMP = _S + "IQ:IMPairment"

#: (pattern, attribute, low, high, unit) of the numeric settings.
_NUMBERS: tuple[tuple[str, str, float, float, str], ...] = (
    (_S + "FREQuency[:CW|FIXed]", "frequency", *FREQUENCY_RANGE, " Hz"),
    (_S + "POWer[:LEVel][:IMMediate][:AMPLitude]", "power", *POWER_RANGE, " dBm"),
    (_S + "PHASe", "phase", *PHASE_RANGE, " deg"),
    (_IMP + ":LEAKage:I", "i_offset", -10.0, 10.0, " %"),
    (_IMP + ":LEAKage:Q", "q_offset", -10.0, 10.0, " %"),
    (_IMP + ":IQRatio[:MAGNitude]", "iq_gain_imbalance", -1.0, 1.0, " dB"),
    (_IMP + ":QUADrature[:ANGLe]", "iq_angle", -8.0, 8.0, " deg"),
    (_PULM + "DELay", "pulse_delay", 0.0, 100.0, " s"),
    (_PULM + "DOUBle:DELay", "pulse_double_delay", 40e-9, 100.0, " s"),
    (_PULM + "DOUBle:WIDTh", "pulse_double_width", 20e-9, 100.0, " s"),
    (_PULM + "PERiod", "pulse_period", 100e-9, 100.0, " s"),
    (_PULM + "WIDTh", "pulse_width", 20e-9, 100.0, " s"),
)

#: (pattern, attribute) of the ON/OFF settings.
_BOOLS: tuple[tuple[str, str], ...] = (
    ("OUTPut[:STATe]", "output"),
    (_S + "IQ:STATe", "iq_state"),
    (_IMP + "[:STATe]", "iq_impairments"),
    (_PULM + "STATe", "pulse_state"),
)

_INT_EXT = ("INTernal", "EXTernal")
_NORM_INV = ("NORMal", "INVerted")
_REF_FREQS = ("10MHZ", "100MHZ", "1000MHZ")

#: (pattern, attribute, choices) of the enumerated settings.
_CHOICES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (_PULM + "SOURce", "pulse_source", _INT_EXT),
    (_PULM + "MODE", "pulse_mode", ("SINGle", "DOUBle")),
    (_PULM + "POLarity", "pulse_polarity", _NORM_INV),
    (_PULM + "TRIGger:MODE", "pulse_trigger_mode", ("AUTO", "EXTernal", "EGATe")),
    (_PULM + "TRIGger:EXTernal:GATE:POLarity", "pulse_gate_polarity", _NORM_INV),
    (_PULM + "TRIGger:EXTernal:IMPedance", "pulse_ext_impedance", ("G50", "G10K")),
    (_PULM + "TRIGger:EXTernal:SLOPe", "pulse_ext_slope", ("NEGative", "POSitive")),
    (_S + "ROSCillator:SOURce", "ref_source", _INT_EXT),
    (_S + "ROSCillator:EXTernal:FREQuency", "ref_external_frequency", _REF_FREQS),
    (_S + "ROSCillator:OUTPut:FREQuency", "ref_output_frequency", _REF_FREQS),
    (_S + "LOSCillator:SOURce", "lo_source", _INT_EXT),
    ("CONNector:REFLo:OUTPut", "ref_lo_output", ("REF", "LO", "OFF")),
    (
        "CONNector:TRIGger:OMODe",
        "trigger_connector_mode",
        ("SVALid", "SNValid", "PVOut", "PETrigger", "PEMSource"),
    ),
    (_S + "OPMode", "operation_mode", ("NORMal", "BBBYpass")),
)


class SGS100AEmulator(SCPIInstrument):
    """Emulated Rohde & Schwarz SGS100A RF source.

    Parameters
    ----------
    name : str
        Instrument name (for :meth:`LabBackend.notify`).
    backend : LabBackend, optional
        Simulated lab; None for a free-standing emulator with its own clock.

    Attributes
    ----------
    state : SGS100AState
        Present settings.
    applied : SourceRecorder
        Every level and output switch applied, as peak volts on the virtual
        clock (tests only; see :mod:`labnr.sim.instruments.history`).
    """

    manufacturer = "Rohde&Schwarz"
    model = "SGS100A"
    serial = "1416.0505k02/000001"
    firmware = "4.2.76.0"
    options = "SGS-B106,SGS-B112,SGS-K22,SGS-K90"

    def __init__(self, name: str, backend: LabBackend | None = None) -> None:
        self.state = SGS100AState()
        self.applied = SourceRecorder()
        super().__init__(name, backend)
        self._add_settings()
        self._record()

    def reset(self) -> None:
        """``*RST``: default settings, RF off."""
        with self.lock:
            self.state = SGS100AState()
            self._record()

    def _record(self) -> None:
        """Log the level and output now in effect (see :attr:`applied`)."""
        self.applied.record(self.clock.now, self.state.power, self.state.output)

    def _level_changed(self) -> None:
        self._record()
        self.changed()

    def _state(self, suffixes: tuple[int, ...]) -> SGS100AState:
        return self.state

    def _add_settings(self) -> None:
        levels = {"power", "output"}
        for pattern, attr, low, high, unit in _NUMBERS:
            self.add_number_setting(
                pattern, self._state, attr, low=low, high=high, unit=unit,
                on_change=self._level_changed if attr in levels else None,
            )  # fmt: skip
        for pattern, attr in _BOOLS:
            self.add_bool_setting(
                pattern, self._state, attr,
                on_change=self._level_changed if attr in levels else None,
            )  # fmt: skip
        for pattern, attr, choices in _CHOICES:
            self.add_choice_setting(pattern, self._state, attr, choices)
