"""Emulator of a Tektronix AWG5208 (8 channels, 2.5 GS/s, AWG mode).

SCPI subset (long form; upper case = short form; ``<n>`` channel 1..8):

Waveform list (samples are IEEE 754 float32, little-endian, in the block)
    WLISt:WAVeform:NEW "<name>",<size>[,REAL]
    WLISt:WAVeform:DATA "<name>"[,<start>[,<size>]],#<block>   and ...:DATA? "<name>"[,..]
    WLISt:WAVeform:MARKer:DATA "<name>"[,<start>[,<size>]],#<block of uint8>
    WLISt:WAVeform:DELete "<name>"|ALL, WLISt:WAVeform:LENGth? "<name>"
    WLISt:LIST?  ("name1,name2"), WLISt:SIZE?, WLISt:NAME? <index, 1-based>
Channels
    [SOURce<n>:]CASSet:WAVeform "<name>", [SOURce<n>:]CASSet?, [SOURce<n>:]CASSet:CLEar
    [SOURce<n>:]WAVeform "<name>"  (older alias of CASSet:WAVeform)
    [SOURce<n>:]VOLTage[:LEVel][:IMMediate][:AMPLitude] <Vpp>, ...:OFFSet <V>, ...:HIGH?, ...:LOW?
    [SOURce<n>:]DAC:RESolution 12..16, OUTPut<n>[:STATe] ON|OFF, OUTPut<n>:PATH DCHB|DCHV
    OUTPut:OFF ON|OFF  (all outputs off)
Run control and clock
    AWGControl:RUN[:IMMediate], AWGControl:STOP[:IMMediate], AWGControl:RSTate? (0|1|2)
    CLOCk:SRATe <Sa/s>, CLOCk:SOURce INTernal|EFIXed|EVARiable|EXTernal,
    INSTrument:MODE AWG|FGEN
Mass memory (the QCoDeS ``makeWFMXFile``/``sendWFMXFile``/``loadWFMXFile`` path)
    MMEMory:CDIRectory "<dir>", MMEMory:DATA "<file>",#<block>, MMEMory:DELete "<file>",
    MMEMory:OPEN "<path>.wfmx"  (loads a .wfmx into the waveform list, named by the file stem)
    SYSTem:ERRor:CODE[:NEXT]?
Stored only (so that a QCoDeS snapshot works): CLOCk:ECLock:FREQuency,
    OUTPut<n>:WVALue:ANALog:STATe,
    OUTPut<n>:WVALue|SVALue:MARKer<m>, SOURce<n>:MARKer<m>:VOLTage:HIGH|LOW, FGEN:CHANnel<n>:*
    (FGEN mode does not play: only AWG mode is emulated).

Physics-facing API: :meth:`AWG5208Emulator.tones` and
:meth:`AWG5208Emulator.periodicity_error` (see
:func:`~labnr.sim.instruments.awg5208_state.demodulate`). The waveform record
plays in a loop; a channel puts out its waveform only when the AWG runs, the
channel output is on and a waveform is assigned. DAC quantization and the
analog bandwidth are not modelled; samples beyond [-1, 1] are clipped.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import ClassVar

import numpy as np

from labnr.sim.instruments.awg5208_state import (
    AWGChannelState,
    AWGLimits,
    AWGState,
    Tone,
    Waveform,
    demodulate,
    periodicity_error,
)
from labnr.sim.instruments.backend import LabBackend
from labnr.sim.instruments.history import AWGRecorder
from labnr.sim.instruments.scpi import (
    QuotedString,
    SCPICall,
    SCPIError,
    SCPIInstrument,
    mnemonic_forms,
    scpi_query,
    scpi_set,
)

__all__ = ["AWG5208Emulator", "Tone"]

#: Settings that are stored and answered but do not change the output:
#: (pattern, default, choices) for enumerations or (pattern, default, (low, high)).
_STORED_SETTINGS: tuple[tuple[str, object, tuple], ...] = (
    ("OUTPut#:WVALue:ANALog[:STATe]", "FIRST", ("FIRSt", "ZERO")),
    ("OUTPut#:WVALue:MARKer#", "LOW", ("FIRSt", "LOW", "HIGH")),
    ("OUTPut#:SVALue:MARKer#", "OFF", ("OFF", "LOW")),
    ("[SOURce#]:MARKer#:VOLTage[:LEVel][:IMMediate]:HIGH", 1.0, (-0.5, 1.75)),
    ("[SOURce#]:MARKer#:VOLTage[:LEVel][:IMMediate]:LOW", 0.0, (-0.3, 1.55)),
    ("CLOCk:ECLock:FREQuency", 2.5e9, (2.5e9, 5e9)),
    ("FGEN[:CHANnel#]:AMPLitude", 0.5, (0.0, 0.75)),
    ("FGEN[:CHANnel#]:OFFSet", 0.0, (-2.0, 2.0)),
    ("FGEN[:CHANnel#]:FREQuency", 1e6, (1.0, 1.25e9)),
    ("FGEN[:CHANnel#]:DCLevel", 0.0, (-0.25, 0.25)),
    ("FGEN[:CHANnel#]:PATH", "DCHB", ("DCHB", "DCHV", "ACDirect")),
    ("FGEN[:CHANnel#]:PHASe", 0.0, (-180.0, 180.0)),
    ("FGEN[:CHANnel#]:SYMMetry", 100.0, (0.0, 100.0)),
    (
        "FGEN[:CHANnel#]:TYPE",
        "SINE",
        ("SINE", "SQUare", "TRIangle", "NOISe", "DC", "GAUSsian", "EXPRise", "EXPDecay", "NONE"),
    ),
)


def _norm_path(path: str) -> str:
    """Canonical mass-memory path: no drive letter, backslashes, lower case."""
    path = path.strip().replace("/", "\\")
    path = re.sub(r"^[A-Za-z]:", "", path)
    return path.lower()


class AWG5208Emulator(SCPIInstrument):
    """Tektronix AWG5208 emulator (see the module docstring for the SCPI subset).

    Parameters
    ----------
    name : str
        Instrument name (``backend.notify``).
    backend : LabBackend, optional
        The simulated lab; None runs on a private clock and notifies nobody.
    dc_amplifier_option : bool
        Whether the DC amplifier option is installed: the DC High Bandwidth
        path then reaches 1.5 Vpp instead of 0.75 Vpp.
    limits : AWGLimits, optional
        Hardware limits (``amplitude_max_dchb`` is overridden by the option).

    Attributes
    ----------
    state : AWGState
        The whole instrument state.
    limits : AWGLimits
    applied : AWGRecorder
        Peak of every waveform each channel held, with its amplitude (tests only).
    """

    manufacturer: ClassVar[str] = "TEKTRONIX"
    model: ClassVar[str] = "AWG5208"
    serial: ClassVar[str] = "B010101"
    firmware: ClassVar[str] = "FV:6.6.0052.0"
    #: Virtual time of ``AWGControl:RUN`` (loading and starting the sequencer), s.
    run_time: ClassVar[float] = 0.1
    #: Virtual time per uploaded sample (4 bytes over ~100 MB/s LAN), s.
    upload_time_per_sample: ClassVar[float] = 4e-8

    def __init__(
        self,
        name: str = "awg",
        backend: LabBackend | None = None,
        dc_amplifier_option: bool = False,
        limits: AWGLimits | None = None,
    ) -> None:
        base = limits if limits is not None else AWGLimits()
        self.limits = replace(
            base, amplitude_max_dchb=1.5 if dc_amplifier_option else base.amplitude_max_dchb
        )
        self.options = "25,DC" if dc_amplifier_option else "25"  # type: ignore[misc]
        self.state = AWGState()
        self._stored: dict[tuple[str, tuple[int, ...]], object] = {}
        self._tone_cache: dict[tuple, list[Tone]] = {}
        self.applied = AWGRecorder()
        super().__init__(name, backend)
        for pattern, default, spec in _STORED_SETTINGS:
            self._add_stored(pattern, default, spec)
        self.reset()

    def reset(self) -> None:
        """``*RST``: empty waveform list, outputs off, stopped, 2.5 GS/s, 0.5 Vpp."""
        files = self.state.files
        self.state = AWGState(sample_rate=self.limits.sample_rate_max, files=files)
        self.state.channels = {
            n: AWGChannelState(number=n) for n in range(1, self.limits.n_channels + 1)
        }
        self._stored.clear()
        self._tone_cache.clear()

    def _device_changed(self) -> None:
        """Forget cached tones and tell the lab (the device sees the outputs)."""
        self._tone_cache.clear()
        self.applied.observe(self.clock.now, self.state)
        self.changed()

    # --------------------------------------------------------------- physics API

    def tones(
        self, channel: int, min_amplitude: float = 1e-6, max_tones: int | None = 32
    ) -> list[Tone]:
        """Tones at the output of a channel, demodulated from its uploaded samples.

        Parameters
        ----------
        channel : int
            Channel number, 1..8.
        min_amplitude : float
            Drop tones below this amplitude, V.
        max_tones : int or None
            Keep at most this many of the strongest tones.

        Returns
        -------
        list of Tone
            Strongest first; empty unless the AWG runs, the output is on and a
            waveform is assigned. See
            :func:`~labnr.sim.instruments.awg5208_state.demodulate`.
        """
        with self.lock:
            self._check_channel(channel)
            if not self.state.is_playing(channel):
                return []
            ch = self.state.channels[channel]
            wave = self.state.waveforms[ch.waveform]  # type: ignore[index]
            key = (
                channel,
                id(wave.samples),
                ch.amplitude_vpp,
                ch.offset_v,
                self.state.sample_rate,
                min_amplitude,
                max_tones,
            )
            if key not in self._tone_cache:
                self._tone_cache[key] = demodulate(
                    wave.samples,
                    self.state.sample_rate,
                    ch.amplitude_vpp,
                    ch.offset_v,
                    min_amplitude=min_amplitude,
                    max_tones=max_tones,
                )
            return list(self._tone_cache[key])

    def periodicity_error(self, channel: int) -> float:
        """Jump at the loop boundary of the channel's waveform, V (0 if none assigned).

        See :func:`~labnr.sim.instruments.awg5208_state.periodicity_error`.
        """
        with self.lock:
            self._check_channel(channel)
            ch = self.state.channels[channel]
            wave = self.state.waveforms.get(ch.waveform or "")
            return 0.0 if wave is None else periodicity_error(wave.samples, ch.amplitude_vpp)

    def _check_channel(self, channel: int) -> AWGChannelState:
        if channel not in self.state.channels:
            raise SCPIError(-114, f"channel {channel} outside 1..{self.limits.n_channels}")
        return self.state.channels[channel]

    # ------------------------------------------------------------- waveform list

    def _waveform(self, name: str) -> Waveform:
        wave = self.state.waveforms.get(name)
        if wave is None:
            raise SCPIError(-224, f"waveform {name!r} is not in the waveform list")
        return wave

    def _assigned(self, name: str) -> bool:
        return any(ch.waveform == name for ch in self.state.channels.values())

    def _add_waveform(self, name: str, samples: np.ndarray) -> None:
        if not name:
            raise SCPIError(-224, "waveform name must not be empty")
        if not 1 <= samples.size <= self.limits.max_record_length:
            raise SCPIError(
                -222,
                f"waveform {name!r}: {samples.size} samples outside "
                f"1..{self.limits.max_record_length}",
            )
        self.state.waveforms[name] = Waveform(name, samples)
        if self._assigned(name):
            self._device_changed()

    @scpi_set("WLISt:WAVeform:NEW", nargs=(2, 3))
    def _new_waveform(self, call: SCPICall) -> None:
        name = call.string(0)
        if name in self.state.waveforms:
            raise SCPIError(-224, f"waveform {name!r} already exists")
        size = call.integer(1, low=1, high=self.limits.max_record_length, name="size")
        if call.has_arg(2):
            call.choice(2, ("REAL",), name="type")
        self._add_waveform(name, np.zeros(size, dtype=np.float32))

    def _range(
        self, call: SCPICall, wave: Waveform, n_opt: int, nvalues: int | None
    ) -> tuple[int, int]:
        """(start, size) from the ``n_opt`` optional start/size arguments after the name.

        ``nvalues`` is the number of values in the data block (None for a query).
        """
        length = wave.samples.size
        start = call.integer(1, low=0, high=length - 1, name="start") if n_opt >= 1 else 0
        default = length - start if nvalues is None else nvalues
        size = call.integer(2, low=1, high=length, name="size") if n_opt >= 2 else default
        if nvalues is not None and size != nvalues:
            raise SCPIError(-161, f"block holds {nvalues} values, size argument says {size}")
        if start + size > length:
            raise SCPIError(
                -222,
                f"samples {start}..{start + size - 1} outside waveform "
                f"{wave.name!r} of {length} samples",
            )
        return start, size

    @scpi_set("WLISt:WAVeform:DATA", nargs=(2, 4))
    def _set_waveform_data(self, call: SCPICall) -> None:
        wave = self._waveform(call.string(0))
        payload = call.block(call.nargs - 1)
        if len(payload) % 4:
            raise SCPIError(-161, f"float32 block of {len(payload)} bytes is not a multiple of 4")
        values = np.frombuffer(payload, dtype="<f4")
        start, size = self._range(call, wave, call.nargs - 2, values.size)
        samples = wave.samples.copy()  # a new array: tone caches key on its identity
        samples[start : start + size] = values
        wave.samples = samples
        self.clock.advance(self.upload_time_per_sample * size)
        if self._assigned(wave.name):
            self._device_changed()

    @scpi_query("WLISt:WAVeform:DATA")
    def _q_waveform_data(self, call: SCPICall) -> bytes:
        call.expect_args(1, 3)
        wave = self._waveform(call.string(0))
        start, size = self._range(call, wave, call.nargs - 1, None)
        return wave.samples[start : start + size].astype("<f4").tobytes()

    @scpi_set("WLISt:WAVeform:MARKer:DATA", nargs=(2, 4))
    def _set_marker_data(self, call: SCPICall) -> None:
        wave = self._waveform(call.string(0))
        values = np.frombuffer(call.block(call.nargs - 1), dtype=np.uint8)
        start, size = self._range(call, wave, call.nargs - 2, values.size)
        markers = (
            np.zeros(wave.samples.size, np.uint8) if wave.markers is None else wave.markers.copy()
        )
        markers[start : start + size] = values
        wave.markers = markers

    @scpi_set("WLISt:WAVeform:DELete", nargs=1)
    def _delete_waveform(self, call: SCPICall) -> None:
        name = call.string(0)
        if name.upper() == "ALL" and not isinstance(call.arg(0), QuotedString):
            names = list(self.state.waveforms)
        else:
            names = [self._waveform(name).name]
        touched = any(self._assigned(n) for n in names)
        for n in names:
            del self.state.waveforms[n]
            for ch in self.state.channels.values():
                if ch.waveform == n:
                    ch.waveform = None
        if touched:
            self._device_changed()

    @scpi_query("WLISt:WAVeform:LENGth")
    def _q_waveform_length(self, call: SCPICall) -> int:
        call.expect_args(1)
        return int(self._waveform(call.string(0)).samples.size)

    @scpi_query("WLISt:LIST")
    def _q_list(self, call: SCPICall) -> str:
        return '"' + ",".join(self.state.waveforms) + '"'

    @scpi_query("WLISt:SIZE")
    def _q_list_size(self, call: SCPICall) -> int:
        return len(self.state.waveforms)

    @scpi_query("WLISt:NAME")
    def _q_list_name(self, call: SCPICall) -> str:
        call.expect_args(1)
        names = list(self.state.waveforms)
        index = call.integer(0, low=1, high=max(len(names), 1), name="index")
        if index > len(names):
            raise SCPIError(-222, "the waveform list is empty")
        return f'"{names[index - 1]}"'

    # ------------------------------------------------------------------ channels

    def _ch(self, call: SCPICall) -> AWGChannelState:
        return self._check_channel(call.suffix(0))

    @scpi_set("[SOURce#]:CASSet:WAVeform", nargs=1)
    def _assign(self, call: SCPICall) -> None:
        ch = self._ch(call)
        ch.waveform = self._waveform(call.string(0)).name
        self._device_changed()

    @scpi_set("[SOURce#]:WAVeform", nargs=1)
    def _assign_alias(self, call: SCPICall) -> None:
        self._assign(call)

    @scpi_query("[SOURce#]:CASSet|WAVeform")
    def _q_assigned(self, call: SCPICall) -> str:
        return f'"{self._ch(call).waveform or ""}"'

    @scpi_set("[SOURce#]:CASSet:CLEar", nargs=0)
    def _clear_asset(self, call: SCPICall) -> None:
        self._ch(call).waveform = None
        self._device_changed()

    def _amplitude_max(self, ch: AWGChannelState) -> float:
        lim = self.limits
        return lim.amplitude_max_dchv if ch.path == "DCHV" else lim.amplitude_max_dchb

    @scpi_set("[SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", nargs=1)
    def _set_amplitude(self, call: SCPICall) -> None:
        ch = self._ch(call)
        low = 0.010 if ch.path == "DCHV" else self.limits.amplitude_min
        ch.amplitude_vpp = call.number(
            0, low=low, high=self._amplitude_max(ch), name="amplitude", unit=" Vpp"
        )
        self._device_changed()

    @scpi_query("[SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]")
    def _q_amplitude(self, call: SCPICall) -> float:
        return self._ch(call).amplitude_vpp

    @scpi_set("[SOURce#]:VOLTage[:LEVel][:IMMediate]:OFFSet", nargs=1)
    def _set_offset(self, call: SCPICall) -> None:
        lim = self.limits.offset_max
        self._ch(call).offset_v = call.number(0, low=-lim, high=lim, name="offset", unit=" V")
        self._device_changed()

    @scpi_query("[SOURce#]:VOLTage[:LEVel][:IMMediate]:OFFSet")
    def _q_offset(self, call: SCPICall) -> float:
        return self._ch(call).offset_v

    @scpi_query("[SOURce#]:VOLTage[:LEVel][:IMMediate]:HIGH|LOW")
    def _q_high_low(self, call: SCPICall) -> float:
        ch = self._ch(call)
        sign = 1.0 if call.header.endswith("HIGH") else -1.0
        return ch.offset_v + sign * 0.5 * ch.amplitude_vpp

    @scpi_set("[SOURce#]:DAC:RESolution", nargs=1)
    def _set_resolution(self, call: SCPICall) -> None:
        self._ch(call).resolution = call.integer(0, low=12, high=16, name="resolution")

    @scpi_query("[SOURce#]:DAC:RESolution")
    def _q_resolution(self, call: SCPICall) -> int:
        return self._ch(call).resolution

    @scpi_set("OUTPut#[:STATe]", nargs=1)
    def _set_output(self, call: SCPICall) -> None:
        self._ch(call).output_on = call.boolean(0)
        self._device_changed()

    @scpi_query("OUTPut#[:STATe]")
    def _q_output(self, call: SCPICall) -> bool:
        return self._ch(call).output_on

    @scpi_set("OUTPut#:PATH", nargs=1)
    def _set_path(self, call: SCPICall) -> None:
        ch = self._ch(call)
        path = call.choice(0, ("DCHB", "DCHV"), name="output path")
        if path == "DCHB" and ch.amplitude_vpp > self.limits.amplitude_max_dchb:
            ch.amplitude_vpp = self.limits.amplitude_max_dchb
        ch.path = path
        self._device_changed()

    @scpi_query("OUTPut#:PATH")
    def _q_path(self, call: SCPICall) -> str:
        return self._ch(call).path

    @scpi_set("OUTPut:OFF", nargs=1)
    def _set_all_off(self, call: SCPICall) -> None:
        self.state.all_outputs_off = call.boolean(0)
        self._device_changed()

    @scpi_query("OUTPut:OFF")
    def _q_all_off(self, call: SCPICall) -> bool:
        return self.state.all_outputs_off

    # ------------------------------------------------------- run control, clock

    @scpi_set("AWGControl:RUN[:IMMediate]", nargs=0)
    def _run(self, call: SCPICall) -> None:
        if not self.state.running:
            self.clock.advance(self.run_time)
            self.state.running = True
            self._device_changed()

    @scpi_set("AWGControl:STOP[:IMMediate]", nargs=0)
    def _stop(self, call: SCPICall) -> None:
        if self.state.running:
            self.state.running = False
            self._device_changed()

    @scpi_query("AWGControl:RSTate")
    def _q_run_state(self, call: SCPICall) -> int:
        return 2 if self.state.running else 0

    @scpi_set("CLOCk:SRATe", nargs=1)
    def _set_sample_rate(self, call: SCPICall) -> None:
        lim = self.limits
        self.state.sample_rate = call.number(
            0, low=lim.sample_rate_min, high=lim.sample_rate_max, name="sample rate", unit=" Sa/s"
        )
        self._device_changed()

    @scpi_query("CLOCk:SRATe")
    def _q_sample_rate(self, call: SCPICall) -> float:
        return self.state.sample_rate

    @scpi_set("CLOCk:SOURce", nargs=1)
    def _set_clock_source(self, call: SCPICall) -> None:
        choice = call.choice(0, ("INTernal", "EFIXed", "EVARiable", "EXTernal"), name="source")
        self.state.clock_source = mnemonic_forms(choice)[0]

    @scpi_query("CLOCk:SOURce")
    def _q_clock_source(self, call: SCPICall) -> str:
        return self.state.clock_source

    @scpi_set("INSTrument:MODE", nargs=1)
    def _set_mode(self, call: SCPICall) -> None:
        self.state.mode = call.choice(0, ("AWG", "FGEN"), name="mode")
        self._device_changed()

    @scpi_query("INSTrument:MODE")
    def _q_mode(self, call: SCPICall) -> str:
        return self.state.mode

    # -------------------------------------------------------------- mass memory

    def _file_path(self, name: str) -> str:
        name = name.strip()
        if re.match(r"^[A-Za-z]:|^\\", name):
            return _norm_path(name)
        return _norm_path(self.state.current_directory.rstrip("\\") + "\\" + name)

    @scpi_set("MMEMory:CDIRectory", nargs=1)
    def _set_cdir(self, call: SCPICall) -> None:
        self.state.current_directory = call.string(0)

    @scpi_query("MMEMory:CDIRectory")
    def _q_cdir(self, call: SCPICall) -> str:
        return f'"{self.state.current_directory}"'

    @scpi_set("MMEMory:DATA", nargs=(2, 3))
    def _mmem_data(self, call: SCPICall) -> None:
        self.state.files[self._file_path(call.string(0))] = call.block(call.nargs - 1)

    @scpi_set("MMEMory:DELete", nargs=(1, 2))
    def _mmem_delete(self, call: SCPICall) -> None:
        path = self._file_path(call.string(0))
        if self.state.files.pop(path, None) is None:
            raise SCPIError(-256, f"{call.string(0)!r}")

    @scpi_set("MMEMory:OPEN", nargs=1)
    def _mmem_open(self, call: SCPICall) -> None:
        path = self._file_path(call.string(0))
        data = self.state.files.get(path)
        if data is None:
            raise SCPIError(-256, f"{call.string(0)!r}")
        if not path.endswith(".wfmx"):
            raise SCPIError(-224, f"{call.string(0)!r}: only .wfmx files can be opened")
        head = data[:4096].decode("latin-1")
        offset = re.search(r'offset="(\d+)"', head)
        nsamp = re.search(r"<NumberSamples>(\d+)</NumberSamples>", head)
        if offset is None or nsamp is None:
            raise SCPIError(-161, f"{call.string(0)!r} is not a valid .wfmx file")
        start, n = int(offset.group(1)), int(nsamp.group(1))
        if len(data) < start + 4 * n:
            raise SCPIError(-161, f"{call.string(0)!r}: {n} samples announced, file too short")
        samples = np.frombuffer(data, dtype="<f4", count=n, offset=start).copy()
        name = path.rsplit("\\", 1)[-1].rsplit(".", 1)[0]
        stem = re.search(re.escape(name), call.string(0), flags=re.IGNORECASE)
        self._add_waveform(stem.group(0) if stem else name, samples)

    @scpi_query("FGEN[:CHANnel#]:PERiod")
    def _q_fgen_period(self, call: SCPICall) -> float:
        frequency = self._stored.get(("FGEN[:CHANnel#]:FREQuency", call.suffixes), 1e6)
        return 1.0 / float(frequency)  # type: ignore[arg-type]

    @scpi_query("SYSTem:ERRor:CODE[:NEXT]")
    def _q_error_code(self, call: SCPICall) -> int:
        return self.pop_error()[0]

    # ---------------------------------------------------------- stored settings

    def _add_stored(self, pattern: str, default: object, spec: tuple) -> None:
        numeric = isinstance(default, float)

        def set_value(call: SCPICall) -> None:
            if numeric:
                value: object = call.number(0, low=spec[0], high=spec[1])
            else:
                value = mnemonic_forms(call.choice(0, spec))[0]
            self._stored[(pattern, call.suffixes)] = value

        def get_value(call: SCPICall) -> object:
            return self._stored.get((pattern, call.suffixes), default)

        self.add_command(pattern, set=set_value, query=get_value, nargs=1)
