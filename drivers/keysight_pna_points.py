"""CW point reads of the Keysight PNA-X driver, for feedback loops.

:class:`PNAPointMixin` gives :class:`~labnr.drivers.keysight_pna.KeysightPNAXBase`
its :meth:`~PNAPointMixin.point_reader` and :meth:`~PNAPointMixin.point`: a few
S-parameters at one stimulus frequency (optionally frequency-offset receivers),
validated once, then read repeatedly on a point channel of their own (see
:class:`~labnr.drivers.keysight_pna_channel.PointReader` and the channel pool of
:mod:`labnr.drivers.keysight_pna_transport`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .keysight_pna_channel import ChannelConfig, PointReader, Stimulus
from .keysight_pna_checks import PNAValidationMixin
from .keysight_pna_transport import PNATransportMixin

__all__ = ["PNAPointMixin"]


class PNAPointMixin(PNATransportMixin, PNAValidationMixin):
    """CW point reads of :class:`~labnr.drivers.keysight_pna.KeysightPNAXBase`."""

    def point_reader(
        self,
        params: Sequence[tuple[int, int]],
        frequency: float,
        offset: float = 0.0,
        multiplier: float = 1.0,
        divisor: float = 1.0,
        *,
        points: int = 1,
        if_bandwidth: float | None = None,
        power: float | None = None,
    ) -> PointReader:
        """A :class:`PointReader` for CW reads of ``params`` at ``frequency``.

        Parameters
        ----------
        params : sequence of (int, int)
            (out_port, in_port) pairs read together (one channel, one trigger).
        frequency : float
            Stimulus (CW) frequency, Hz.
        offset, multiplier, divisor : float
            Receivers at ``frequency * multiplier / divisor + offset`` (frequency
            offset, option 080, unless the identity); applies to every pair.
        points : int
            CW readings per acquisition (averaged by :meth:`PointReader.read`).
        if_bandwidth : float, optional
            Hz; default: the sweep channel's ``if_bandwidth`` now.
        power : float, optional
            Source power of every driven port, dBm; default: their ``power`` now.

        Returns
        -------
        PointReader
            Validated, nothing sent yet. Averaging follows ``averaging``/``averages``.
        """
        checked = self._check_params(params)
        f = self._check_frequency("frequency", frequency)
        points = self._check_int("points", points, 1, self.limits.max_points)
        fom = self._check_offset((f,), offset, multiplier, divisor)
        ifbw, powers, averages = self._inherited({i for _, i in checked}, if_bandwidth, power)
        config = ChannelConfig(checked, Stimulus("CW", f, f, points), fom, ifbw, powers, averages)
        return PointReader(self, config)

    def point(
        self,
        params: Sequence[tuple[int, int]],
        frequency: float,
        offset: float = 0.0,
        multiplier: float = 1.0,
        divisor: float = 1.0,
        *,
        points: int = 1,
        if_bandwidth: float | None = None,
        power: float | None = None,
    ) -> npt.NDArray[np.complex128]:
        """Complex S-parameters at one frequency, for feedback loops.

        Same arguments as :meth:`point_reader`. Each distinct configuration
        gets its own point channel (least recently used reassigned first), so
        alternating between e.g. a forward and a reverse read costs no setup:
        a repeated call sends only ``INIT<c>;*OPC?;:SYST:ERR?`` and one
        ``SDATA`` query per parameter.

        Returns
        -------
        numpy.ndarray
            Complex, shape (len(params),), averaged over ``points`` readings.
        """
        return self.point_reader(
            params, frequency, offset, multiplier, divisor,
            points=points, if_bandwidth=if_bandwidth, power=power,
        ).read()  # fmt: skip
