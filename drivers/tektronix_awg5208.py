"""Tektronix AWG5208 with direct, exact waveform-list upload.

QCoDeS's :class:`~qcodes.instrument_drivers.tektronix.TektronixAWG5208` is kept
for everything it does well (clock, run state, channel parameters, snapshot);
this thin subclass adds what a phase-coherent pump needs and fixes what does
not fit the AWG5208:

- **Direct upload.** ``WLISt:WAVeform:NEW`` and ``WLISt:WAVeform:DATA`` with an
  IEEE 488.2 binary block of little-endian float32 samples (one message per
  waveform, no ``.wfmx`` file round trip through mass memory). Samples go to the
  instrument bit-exactly as given; values outside [-1, 1] (which the DAC would
  clip) are refused before anything is sent.
- **Model limits as constructor arguments.** QCoDeS validates the AWG amplitude
  of every AWG5208 channel as 0.25-1.5 Vpp; the DC High Bandwidth path of the
  AWG5208 spans 25 mVpp-750 mVpp, and 1.5 Vpp only with the DC amplifier option
  (``dc_amplifier_option=True``).
- **Errors.** :meth:`check_errors` drains ``SYSTem:ERRor?`` and raises
  :class:`AWGError` with the instrument's own text.
- **Run without polling.** :meth:`run` starts the sequencer and checks for errors
  once (QCoDeS's ``play`` polls with 100 ms sleeps).
- **Identity first.** ``*IDN?`` must answer TEKTRONIX AWG5208 (and the serial,
  when ``serial=`` is given) before QCoDeS's ``__init__`` writes anything (it sets
  the mass-memory directory); a wrong instrument is closed untouched, and no
  late reply answers a later query (:mod:`labnr.drivers.visa_guard`).

pyvisa-sim file for plumbing tests: ``labnr.drivers.sims:tektronix_awg5208.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
import qcodes.validators as vals
from qcodes.instrument_drivers.tektronix import Tektronix70000AWGChannel, TektronixAWG5208

from .identity import AWG5208, Identity
from .parsing import parse_error, parse_int
from .visa_guard import GuardedVisaInstrument

if TYPE_CHECKING:
    from qcodes.instrument import VisaInstrumentKWArgs
    from typing_extensions import Unpack

__all__ = ["AWGError", "TektronixAWG5208Direct"]


class AWGError(RuntimeError):
    """The AWG reported an error (the message holds the instrument's own text)."""


class TektronixAWG5208Direct(TektronixAWG5208, GuardedVisaInstrument):
    """AWG5208 with direct float32 waveform-list upload.

    Parameters
    ----------
    name : str
        Instrument name.
    address : str
        VISA resource, e.g. ``TCPIP::192.168.0.10::INSTR`` or
        ``TCPIP::127.0.0.1::5025::SOCKET`` (then pass ``terminator="\\n"``).
    dc_amplifier_option : bool
        Whether the DC amplifier option is installed: the DC High Bandwidth
        path then reaches 1.5 Vpp instead of 0.75 Vpp.
    min_waveform_length : int
        Shortest waveform this driver uploads, samples (2400 is the
        sequencer's minimum on the AWG5200 series and safe in AWG mode).
    serial : str, optional
        Expected serial number (``*IDN?``); None: not checked.
    **kwargs
        Forwarded to :class:`~qcodes.instrument.VisaInstrument`.

    Attributes
    ----------
    amplitude_range : tuple of float
        Allowed channel amplitude (DC High Bandwidth path), Vpp.
    sample_rate_range : tuple of float
        Allowed sample rate with the internal clock, Sa/s.
    max_waveform_length : int
        Longest waveform (standard memory), samples.
    """

    #: Sample-rate range of the internal clock, Sa/s (option 25).
    sample_rate_range: tuple[float, float] = (1.49e3, 2.5e9)
    #: Standard waveform memory, samples.
    max_waveform_length: int = 16_200_000
    #: What the AWG must answer to ``*IDN?`` (eight channels, as this class assumes).
    identity: ClassVar[Identity] = AWG5208

    def __init__(
        self,
        name: str,
        address: str,
        dc_amplifier_option: bool = False,
        min_waveform_length: int = 2400,
        serial: str | None = None,
        **kwargs: Unpack[VisaInstrumentKWArgs],
    ) -> None:
        # QCoDeS's __init__ forwards kwargs to GuardedVisaInstrument, which confirms *IDN?
        super().__init__(name, address, serial=serial, **kwargs)  # type: ignore[call-arg]
        self.amplitude_range: tuple[float, float] = (0.025, 1.5 if dc_amplifier_option else 0.75)
        self.min_waveform_length = int(min_waveform_length)
        for n in range(1, self.num_channels + 1):
            self.channel(n).awg_amplitude.vals = vals.Numbers(*self.amplitude_range)

    # ------------------------------------------------------------------ helpers
    def channel(self, number: int) -> Tektronix70000AWGChannel:
        """The QCoDeS channel module of channel ``number`` (1-based)."""
        if not 1 <= number <= self.num_channels:
            raise ValueError(
                f"{self.name}: channel {number} does not exist (1..{self.num_channels})"
            )
        module = self.submodules[f"ch{number}"]
        assert isinstance(module, Tektronix70000AWGChannel)
        return module

    def check_errors(self, context: str = "") -> None:
        """Drain the error queue; raise :class:`AWGError` with every entry if not empty.

        Parameters
        ----------
        context : str
            What was just done (quoted in the message).
        """
        found = []
        for _ in range(32):
            reply = self.ask("SYSTem:ERRor?").strip()
            code, _ = parse_error(reply, f"{self.name} error queue (SYSTem:ERRor?)")
            if code == 0:
                break
            found.append(reply)
        if found:
            where = f" after {context}" if context else ""
            raise AWGError(f"{self.name} reported{where}: " + "; ".join(found))

    # ------------------------------------------------------------------ waveforms
    def waveform_names(self) -> list[str]:
        """Names in the waveform list (QCoDeS's ``waveformList`` without its empty entry)."""
        return [n for n in self.waveformList if n]

    def waveform_length(self, name: str) -> int:
        """Length of a waveform in the waveform list, samples."""
        return parse_int(self.ask(f'WLISt:WAVeform:LENGth? "{name}"'), f"length of {name!r}")

    def delete_waveform(self, name: str) -> None:
        """Remove one waveform from the waveform list."""
        self.write(f'WLISt:WAVeform:DELete "{name}"')

    def new_waveform(self, name: str, length: int) -> None:
        """Create an empty (zero) float waveform of ``length`` samples."""
        self._check_length(name, length)
        self.write(f'WLISt:WAVeform:NEW "{name}",{int(length)}')

    def write_waveform(
        self, name: str, samples: npt.ArrayLike, start: int = 0, check: bool = True
    ) -> None:
        """Write samples into an existing waveform (one binary-block message).

        Parameters
        ----------
        name : str
            Waveform in the waveform list.
        samples : array_like
            Values in [-1, 1] (full scale of the channel playing it); sent as
            little-endian float32.
        start : int
            First sample to overwrite.
        check : bool
            Query ``SYSTem:ERRor?`` afterwards (also waits until the AWG has
            taken the data). Pass False to batch several writes and call
            :meth:`check_errors` once.

        Raises
        ------
        ValueError
            Empty, non-finite or out-of-range samples (nothing is sent).
        AWGError
            The instrument refused the data.
        """
        data = self._as_samples(name, samples)
        header = f'WLISt:WAVeform:DATA "{name}",{int(start)},{data.size},'
        with self.exchange(header, write=True):
            self.visa_handle.write_binary_values(header, data, datatype="f", is_big_endian=False)
        if check:
            self.check_errors(f"writing {data.size} samples to waveform {name!r}")

    def upload_waveform(
        self, name: str, samples: npt.ArrayLike, existing: Iterable[str] | None = None
    ) -> None:
        """Create (or replace) a waveform and write its samples.

        A waveform of the same name and length is overwritten in place (no
        delete, so a channel playing it keeps its assignment); otherwise it is
        deleted and created anew.

        Parameters
        ----------
        name : str
            Waveform name.
        samples : array_like
            Values in [-1, 1].
        existing : iterable of str, optional
            Names already in the waveform list, if known (saves a query).
        """
        data = self._as_samples(name, samples)
        self._check_length(name, data.size)
        names = self.waveform_names() if existing is None else list(existing)
        if name in names:
            if self.waveform_length(name) == data.size:
                self.write_waveform(name, data)
                return
            self.delete_waveform(name)
        self.new_waveform(name, data.size)
        self.write_waveform(name, data)

    def read_waveform(self, name: str) -> np.ndarray:
        """All samples of a waveform, float32."""
        query = f'WLISt:WAVeform:DATA? "{name}"'
        with self.exchange(query, write=False):
            data = self.visa_handle.query_binary_values(
                query, datatype="f", is_big_endian=False, container=np.array
            )
        return data.astype(np.float32)

    # ------------------------------------------------------------------ channels and run
    def assign_waveform(self, channel: int, name: str) -> None:
        """Play waveform ``name`` on ``channel`` (``SOURce<n>:CASSet:WAVeform``).

        Unlike QCoDeS's ``setWaveform`` this does not list the waveforms first;
        an unknown name shows up in :meth:`check_errors`.
        """
        self.write(f'SOURce{self.channel(channel).channel}:CASSet:WAVeform "{name}"')

    def set_outputs(self, channels: Iterable[int], on: bool) -> None:
        """Switch several channel outputs in one message."""
        chans = [self.channel(n).channel for n in channels]
        if chans:
            state = 1 if on else 0
            self.write(";:".join(f"OUTPut{n}:STATe {state}" for n in chans))

    def run(self) -> None:
        """Start the sequencer (``AWGControl:RUN``) and check for errors."""
        self.write("AWGControl:RUN")
        self.check_errors("AWGControl:RUN")

    # ------------------------------------------------------------------ validation
    def _check_length(self, name: str, length: int) -> None:
        low, high = self.min_waveform_length, self.max_waveform_length
        if not low <= length <= high:
            raise ValueError(
                f"{self.name}: waveform {name!r} of {length} samples; allowed {low}..{high}"
            )

    def _as_samples(self, name: str, samples: npt.ArrayLike) -> np.ndarray:
        data = np.ascontiguousarray(samples, dtype="<f4").ravel()
        if data.size == 0:
            raise ValueError(f"{self.name}: waveform {name!r} has no samples")
        if not np.all(np.isfinite(data)):
            raise ValueError(f"{self.name}: waveform {name!r} holds non-finite samples")
        peak = float(np.max(np.abs(data)))
        if peak > 1.0:
            raise ValueError(
                f"{self.name}: waveform {name!r} would clip: peak sample {peak:.6g} "
                "outside [-1, 1] (full scale)"
            )
        return data
