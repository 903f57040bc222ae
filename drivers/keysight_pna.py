"""QCoDeS driver for the Keysight PNA / PNA-X network analyzer family.

What it adds over QCoDeS's ``KeysightPNABase``: complex ``SDATA`` of many
measurements from ONE sweep as ``REAL,64`` blocks (:meth:`~KeysightPNAXBase.smatrix`),
frequency-offset (FOM, option 080) transmission of frequency-converting devices
(:meth:`~KeysightPNAXBase.transmission_offset`) and cheap repeated point reads
for feedback loops (:meth:`~KeysightPNAXBase.point`, :class:`PointReader`).

.. code-block:: python

    vna = KeysightN5242B("vna", "TCPIP::10.0.0.5::hislip0::INSTR")
    vna.start(5.25e9); vna.stop(5.37e9); vna.points(1601); vna.if_bandwidth(1e3)
    f, S = vna.smatrix(ports=(1, 2, 3))      # S.shape == (1601, 3, 3), S[:, out, in]
    t = vna.transmission_offset(2, 1, 5.25e9, 5.37e9, 401, offset=1.16e9)
    s21 = vna.point([(2, 1)], 5.31e9, offset=1.16e9)   # feedback loops: no re-setup

Channels
--------
The driver owns three kinds of analyzer channels (numbers are constructor
arguments): the *sweep channel* (default 1) that the instrument parameters
(``start``, ``points``, ``if_bandwidth``, ``port1.power``, ...) configure and
that ``smatrix``/``sweep``/``S21`` measure; the *offset channel* (default 2)
for :meth:`~KeysightPNAXBase.transmission_offset`; and a pool of *point
channels* (default 3-6), one per distinct point-read configuration, least
recently used reassigned first. On each of them the driver keeps exactly the
measurements it needs (existing ones of the same S-parameter are reused,
others deleted), puts the channel in ``HOLD`` and triggers it itself.

Caching
-------
A channel is configured once per configuration; later acquisitions with an
equal configuration send only the trigger (``INIT<c>;*OPC?;:SYST:ERR?``) and
the data queries. Setting a parameter through the driver drops the cache of
the sweep channel. The driver assumes it is the analyzer's only client: after
changes from the front panel or another program call
:meth:`~KeysightPNAXBase.invalidate_cache`.

QCoDeS datasets
---------------
``S11``, ``S21``, ... are :class:`~qcodes.parameters.ParameterWithSetpoints`
(complex arrays, setpoints ``frequency``); each ``get`` sweeps that one
S-parameter. To store a whole S-matrix from one sweep, register the traces and
add ``*vna.smatrix_results(ports)``: a 3-D array with port axes has no direct
ParameterWithSetpoints form, so the matrix is stored element by element (all
from the same sweep).

Errors
------
Invalid values raise ``ValueError``/``TypeError`` before anything is sent, naming
the instrument, the parameter or argument, the value and what is allowed. After
every configuration step the error queue (``SYST:ERR?``) is drained and any
error raises :class:`PNAError` with the analyzer's own text.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
from qcodes.instrument import ChannelList, ChannelTuple
from qcodes.parameters import Parameter

from .identity import KEYSIGHT_VENDORS, PNA_FAMILY, Identity
from .keysight_pna_channel import (
    ChannelConfig,
    OffsetTransmission,
    PNAError,
    PointReader,
    PreparedChannel,
    Stimulus,
)
from .keysight_pna_checks import PNAValidationMixin
from .keysight_pna_limits import PNA_IF_BANDWIDTHS, PNA_MODEL_LIMITS, PNALimits, limit_arguments
from .keysight_pna_params import PNAParameterMixin, PNAPort
from .keysight_pna_points import PNAPointMixin
from .keysight_pna_transport import PNATransportMixin
from .resilience import call_with_retries
from .visa_guard import GuardedVisaInstrument

if TYPE_CHECKING:
    from qcodes.instrument import VisaInstrumentKWArgs
    from typing_extensions import Unpack

__all__ = [
    "PYVISA_SIM_FILE",
    "KeysightN5222B",
    "KeysightN5242B",
    "KeysightPNAXBase",
    "OffsetTransmission",
    "PNAError",
    "PointReader",
]

#: ``pyvisa_sim_file`` argument for the driver's plumbing simulation.
PYVISA_SIM_FILE = "labnr.drivers:sims/keysight_pna.yaml"


class KeysightPNAXBase(
    PNAPointMixin, PNATransportMixin, PNAParameterMixin, PNAValidationMixin, GuardedVisaInstrument
):
    """Keysight PNA / PNA-X family; model limits are constructor arguments.

    On connect the analyzer must answer ``*IDN?`` as :attr:`identity` (here
    any Keysight/Agilent N52xx or P50xx; each model class narrows it to its
    model) before anything is written; see :mod:`labnr.drivers.visa_guard`.
    The parts live in mixins: point reads (:mod:`.keysight_pna_points`),
    transport and channel cache (:mod:`.keysight_pna_transport`), parameters
    and ports (:mod:`.keysight_pna_params`), checks (:mod:`.keysight_pna_checks`).

    Parameters
    ----------
    name : str
        Instrument name.
    address : str, optional
        VISA resource (``TCPIP::<ip>::hislip0::INSTR``; for a raw socket
        ``TCPIP::<ip>::5025::SOCKET``, newline-terminated by default).
    min_frequency, max_frequency : float
        Frequency range, Hz.
    n_ports : int
        Number of test ports.
    min_power, max_power : float
        Settable source power, dBm.
    max_points : int
        Maximum points per sweep.
    if_bandwidths : sequence of float
        Valid IF bandwidths, Hz.
    max_averages : int
        Maximum averaging factor.
    sweep_channel, offset_channel : int
        Channel numbers the driver uses for sweeps and frequency-offset sweeps.
    point_channels : sequence of int
        Channels for point reads (one per distinct configuration, LRU reuse).
    serial : str, optional
        Expected serial number (``*IDN?``), e.g. ``init: {serial: MY59100001}``
        in the station file; None: not checked.
    **kwargs
        :class:`~qcodes.instrument.VisaInstrument` arguments (``timeout``,
        ``terminator``, ``pyvisa_sim_file``, ``metadata``, ...).
    """

    default_terminator = "\n"
    default_timeout = 10.0
    #: What the analyzer must answer to ``*IDN?`` (vendor, model family).
    identity: ClassVar[Identity] = PNA_FAMILY

    def __init__(
        self,
        name: str,
        address: str | None = None,
        *,
        min_frequency: float,
        max_frequency: float,
        n_ports: int,
        min_power: float,
        max_power: float,
        max_points: int = 100_001,
        if_bandwidths: Sequence[float] = PNA_IF_BANDWIDTHS,
        max_averages: int = 65_536,
        sweep_channel: int = 1,
        offset_channel: int = 2,
        point_channels: Sequence[int] = (3, 4, 5, 6),
        serial: str | None = None,
        **kwargs: Unpack[VisaInstrumentKWArgs],
    ) -> None:
        self.limits = PNALimits(
            min_frequency, max_frequency, n_ports, min_power, max_power,
            max_points, tuple(float(b) for b in if_bandwidths), max_averages,
        )  # fmt: skip
        channels = [sweep_channel, offset_channel, *point_channels]
        if len(set(channels)) != len(channels) or min(channels) < 1 or not point_channels:
            raise ValueError(
                f"{type(self).__name__} {name!r}: channels sweep={sweep_channel}, "
                f"offset={offset_channel}, point={tuple(point_channels)} must be distinct "
                "numbers >= 1, with at least one point channel"
            )
        self.sweep_channel = sweep_channel
        self.offset_channel = offset_channel
        self.point_channels = tuple(point_channels)
        self._prepared: dict[int, PreparedChannel] = {}
        self._point_lru: OrderedDict[ChannelConfig, int] = OrderedDict()
        self._electrical_delay = 0.0
        super().__init__(name, address, serial=serial, **kwargs)  # confirms *IDN? first
        self.options: tuple[str, ...] = self._read_options()
        self.fom_available = "080" in self.options
        self._initialize()
        self._add_frequency_parameters()
        self._add_receiver_parameters()
        self.ports: ChannelTuple[PNAPort] = self._add_port_parameters()
        self._add_trace_parameters()
        self.metadata.setdefault("limits", self.limits.__dict__ | {"options": self.options})
        self.log.info("connected: %s, options %s", self.get_idn(), self.options)

    def _add_port_parameters(self) -> ChannelTuple[PNAPort]:
        ports = ChannelList(self, "ports", PNAPort)
        for p in range(1, self.limits.n_ports + 1):
            port = PNAPort(self, f"port{p}", p, self._set_sweep_setting)
            ports.append(port)
            self.add_submodule(f"port{p}", port)
        return self.add_submodule("ports", ports.to_channel_tuple())

    def ask_raw(self, cmd: str) -> str:
        """A query, retried on transient faults (:mod:`labnr.drivers.resilience`)."""
        base = super().ask_raw
        return call_with_retries(self, f"query {cmd!r}", lambda: base(cmd))

    def invalidate_cache(self) -> None:
        """Forget configured channels and cached parameter values.

        Call after the analyzer was changed behind the driver's back (front
        panel, another program); the next acquisition configures again.
        """
        self._prepared.clear()
        self._point_lru.clear()
        for module in (self, *self.ports):
            for param in module.parameters.values():
                param.cache.invalidate()

    def preset(self) -> None:
        """``SYSTem:PRESet`` (channel 1 with S11, continuous sweep), then re-initialise."""
        self.write_raw("SYST:PRES")
        self.ask_raw("*OPC?")
        self.invalidate_cache()
        self._electrical_delay = 0.0
        self._initialize()

    # ------------------------------------------------------------- acquisition

    def sweep(
        self, params: Sequence[tuple[int, int]]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.complex128]]:
        """One sweep of the sweep channel measuring exactly the given S-parameters.

        Parameters
        ----------
        params : sequence of (int, int)
            (out_port, in_port) pairs, e.g. ``[(2, 1), (1, 1)]``.

        Returns
        -------
        frequencies : numpy.ndarray
            Stimulus (= receiver) frequencies, Hz, shape (points,).
        data : numpy.ndarray
            Complex ``SDATA``, shape (points, len(params)).

        Notes
        -----
        The first call for a set of parameters defines the measurements on the
        sweep channel; later calls send one trigger message and one binary
        query per parameter. An acquisition takes one pass per distinct
        source port (times the averaging factor); the visa timeout is raised
        accordingly while waiting on ``*OPC?``.
        """
        checked = self._check_params(params)
        config = ChannelConfig(checked, electrical_delay=self._electrical_delay or None)
        prep, data = self._acquire(self.sweep_channel, config)
        return prep.stimulus.copy(), data

    def smatrix(
        self, ports: Sequence[int]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.complex128]]:
        """Full S-matrix of ``ports`` from one sweep of the sweep channel.

        Parameters
        ----------
        ports : sequence of int
            Port numbers, e.g. ``(1, 2, 3)``; the matrix axes follow this order.

        Returns
        -------
        frequencies : numpy.ndarray
            Hz, shape (nfreq,).
        S : numpy.ndarray
            Complex, shape (nfreq, nout, nin) (scikit-rf's layout):
            ``S[:, a, b]`` is S_{ports[a], ports[b]}, read as ``SDATA`` (corrected
            data before electrical delay and formatting).

        Notes
        -----
        All len(ports)**2 measurements live in one channel; one ``INIT`` sweeps
        them (one pass per source port) and the data come as ``REAL,64``
        blocks. On a frequency-converting device the off-diagonal elements
        of a plain sweep are only leakage: use :meth:`transmission_offset`.
        """
        port_list = [self._check_int("port", p, 1, self.limits.n_ports) for p in ports]
        if not port_list or len(set(port_list)) != len(port_list):
            self._fail("ports", tuple(ports), "expected distinct port numbers")
        n = len(port_list)
        freqs, data = self.sweep([(o, i) for o in port_list for i in port_list])
        return freqs, data.reshape(freqs.size, n, n)

    def smatrix_results(self, ports: Sequence[int]) -> list[tuple[Parameter, Any]]:
        """``smatrix(ports)`` as ``(parameter, value)`` pairs for ``DataSaver.add_result``.

        Parameters
        ----------
        ports : sequence of int
            Port numbers.

        Returns
        -------
        list of (Parameter, numpy.ndarray)
            ``(frequency, f)`` followed by ``(S<o><i>, S[:, a, b])`` for every pair,
            all from one sweep. Register ``frequency`` and the ``S<o><i>`` traces
            (e.g. ``meas.register_parameter(vna.S21)``) before the run.
        """
        freqs, S = self.smatrix(ports)
        results: list[tuple[Parameter, Any]] = [(self.frequency, freqs)]
        for a, o in enumerate(ports):
            for b, i in enumerate(ports):
                results.append((self.trace(o, i), S[:, a, b]))
        return results

    def transmission_offset(
        self,
        out_port: int,
        in_port: int,
        start: float,
        stop: float,
        points: int,
        offset: float,
        multiplier: float = 1.0,
        divisor: float = 1.0,
        *,
        if_bandwidth: float | None = None,
        power: float | None = None,
    ) -> OffsetTransmission:
        r"""Transmission of a frequency-converting device (frequency-offset mode, option 080).

        The input port is swept linearly over [``start``, ``stop``]; the output
        port's receivers listen at

        .. math:: f_\mathrm{rx} = f \cdot \mathrm{multiplier} / \mathrm{divisor} + \mathrm{offset}.

        E.g. a converter a -> b driven by a pump at ``f_p = f_b - f_a``:
        ``offset=f_p``; a difference-frequency (conjugating) process:
        ``multiplier=-1, offset=f_p``.

        Parameters
        ----------
        out_port, in_port : int
            Receiving and driven port.
        start, stop : float
            Stimulus range, Hz (``start <= stop``).
        points : int
            Number of points.
        offset : float
            Receiver offset, Hz.
        multiplier, divisor : float
            Receiver coupling coefficients.
        if_bandwidth : float, optional
            Hz; default: the sweep channel's ``if_bandwidth``.
        power : float, optional
            Source power at ``in_port``, dBm; default: that port's ``power``.

        Returns
        -------
        OffsetTransmission
            ``(stimulus, receiver, data)``: frequencies in Hz and the complex ratio
            b_out(f_rx) / a_in(f), shape (points,). Averaging follows the sweep
            channel's ``averaging``/``averages``.

        Notes
        -----
        Phase. The ratio of two waves at different frequencies has no
        intrinsic phase: the analyzer's receivers (LO) are not phase-locked
        across the two frequencies, so without calibration the phase includes
        an arbitrary, setup-dependent offset. A *scalar-mixer calibration*
        (SMC) corrects magnitude (match and power) only — its phase stays
        arbitrary. Only a *vector-mixer calibration* (VMC, with a reference
        mixer and a characterised calibration mixer) gives meaningful,
        repeatable phase and group delay. Here the returned ``SDATA`` is the
        uncorrected ratio unless the channel holds a calibration; in the labnr
        virtual lab the analyzer is phase-coherent and its phase is the
        device's plus the lines' (input line at f, output line at f_rx).
        Relative phase changes (e.g. against a pump phase) are meaningful in
        both cases as long as the setup is unchanged.
        """
        lim = self.limits
        params = self._check_params([(out_port, in_port)])
        start = self._check_frequency("start", start)
        stop = self._check_frequency("stop", stop)
        if stop < start:
            self._fail("stop", stop, f"must be >= start = {start!r} Hz")
        points = self._check_int("points", points, 1, lim.max_points)
        fom = self._check_offset((start, stop), offset, multiplier, divisor)
        ifbw, powers, averages = self._inherited({in_port}, if_bandwidth, power)
        config = ChannelConfig(
            params, Stimulus("LIN", start, stop, points), fom, ifbw, powers, averages
        )
        prep, data = self._acquire(self.offset_channel, config)
        return OffsetTransmission(prep.stimulus.copy(), prep.receiver.copy(), data[:, 0])


class KeysightN5242B(KeysightPNAXBase):
    """Keysight PNA-X N5242B: 4 ports, 10 MHz - 26.5 GHz.

    Accepts an analyzer answering ``*IDN?`` as N5242A or N5242B (Keysight or
    Agilent); another PNA model is refused (its limits differ): use its class,
    or :class:`KeysightPNAXBase` with its limits.

    Power range -90 to +20 dBm assumes the source attenuators (option 419);
    pass ``min_power``/``max_power`` to override.

    Parameters
    ----------
    name : str
        Instrument name.
    address : str, optional
        VISA resource.
    **kwargs
        Limits to override and :class:`KeysightPNAXBase` / VisaInstrument arguments.
    """

    identity: ClassVar[Identity] = Identity(
        KEYSIGHT_VENDORS, (r"N5242[AB]",), "a Keysight PNA-X N5242A/B"
    )

    def __init__(self, name: str, address: str | None = None, **kwargs: Any) -> None:
        limits = limit_arguments(PNA_MODEL_LIMITS["KeysightN5242B"])  # the table labnr.config uses
        super().__init__(name, address, **(limits | kwargs))


class KeysightN5222B(KeysightPNAXBase):
    """Keysight PNA N5222B: 4 ports, 10 MHz - 26.5 GHz, -95 to +13 dBm (with attenuators).

    Accepts an analyzer answering ``*IDN?`` as N5222A or N5222B.

    Parameters
    ----------
    name : str
        Instrument name.
    address : str, optional
        VISA resource.
    **kwargs
        Limits to override and :class:`KeysightPNAXBase` / VisaInstrument arguments.
    """

    identity: ClassVar[Identity] = Identity(
        KEYSIGHT_VENDORS, (r"N5222[AB]",), "a Keysight PNA N5222A/B"
    )

    def __init__(self, name: str, address: str | None = None, **kwargs: Any) -> None:
        limits = limit_arguments(PNA_MODEL_LIMITS["KeysightN5222B"])  # the table labnr.config uses
        super().__init__(name, address, **(limits | kwargs))
