"""Transport and channel cache of the Keysight PNA-X driver.

:class:`PNATransportMixin` is the instrument side of the acquisition engine
(:mod:`labnr.drivers.keysight_pna_channel`) in
:class:`~labnr.drivers.keysight_pna.KeysightPNAXBase`: ``REAL,64`` binary
blocks, the visa timeout raised for a sweep, settings and acquisitions retried
as one operation on transient faults (:mod:`labnr.drivers.resilience`), the
driver's start-up commands, and the cache of configured channels — one entry per
analyzer channel, plus the least-recently-used assignment of point-read
configurations to the point channels.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from .keysight_pna_channel import (
    ChannelConfig,
    PreparedChannel,
    acquire,
    prepare,
    read_stimulus,
    sweep_timeout_seconds,
)
from .keysight_pna_params import channel_catalog
from .resilience import call_with_retries, require_finite

__all__ = ["PNATransportMixin"]


class PNATransportMixin:
    """Binary blocks, timeouts, retried exchanges and the channel cache of the PNA-X driver."""

    sweep_channel: int
    point_channels: tuple[int, ...]
    fom_available: bool
    _prepared: dict[int, PreparedChannel]
    _point_lru: OrderedDict[ChannelConfig, int]
    visa_handle: Any
    visa_log: Any
    exchange: Callable[..., Any]
    ask_raw: Callable[[str], str]
    write_raw: Callable[[str], None]
    check_errors: Callable[..., None]

    # ------------------------------------------------------------------ setup

    def _read_options(self) -> tuple[str, ...]:
        reply = self.ask_raw("*OPT?").strip().strip('"')
        return tuple(o.strip() for o in reply.split(",") if o.strip())

    def _initialize(self) -> None:
        """Binary transfer format, sweep channel present, port powers uncoupled."""
        chan = self.sweep_channel
        cmds = ["FORM REAL,64", "FORM:BORD SWAP", "TRIG:SOUR IMM"]
        if not channel_catalog(self, chan):  # a channel exists only with a measurement
            cmds.append(f"CALC{chan}:PAR:DEF:EXT 'labnr_c{chan}_S11','S11'")
        cmds.append(f"SOUR{chan}:POW:COUP OFF")
        for cmd in cmds:
            self.write_raw(cmd)
        self.check_errors("initialising the driver")

    # --------------------------------------------------------------- transport

    def ask_block(self, cmd: str) -> npt.NDArray[np.float64]:
        """Query a ``REAL,64`` little-endian binary block (``FORM:BORD SWAP``).

        Parameters
        ----------
        cmd : str
            The query.

        Returns
        -------
        numpy.ndarray
            Float64 values (read-only view of the received bytes).
        """
        self.visa_log.debug("Querying block: %s", cmd)
        with self.exchange(cmd, write=False):  # identity confirmed, no stale reply
            # an ndarray container makes pyvisa decode with numpy.frombuffer
            values = self.visa_handle.query_binary_values(
                cmd, datatype="d", is_big_endian=False, container=np.ndarray
            )
        return np.asarray(values)

    @contextmanager
    def sweep_timeout(self, duration: float) -> Iterator[None]:
        """Raise the visa timeout by 1.5 x ``duration`` (s) for the enclosed exchange."""
        handle = self.visa_handle
        old = handle.timeout
        base = None if old is None else old / 1000.0
        handle.timeout = sweep_timeout_seconds(base, duration) * 1000.0
        try:
            yield
        finally:
            handle.timeout = old

    def _write_checked(self, cmd: str) -> None:
        """Write an absolute setting and check the error queue (retried as one operation)."""

        def once() -> None:
            self.write_raw(cmd)
            self.check_errors(repr(cmd))

        call_with_retries(self, f"setting {cmd!r}", once)

    def _set_sweep_setting(self, cmd: str) -> None:
        """Write a sweep-channel setting, check errors, drop the sweep channel's cache."""
        self._prepared.pop(self.sweep_channel, None)
        self._write_checked(cmd)

    # ------------------------------------------------------------ channel cache

    def _acquire(self, chan: int, config: ChannelConfig) -> tuple[PreparedChannel, Any]:
        """Configure (if needed) and acquire ``chan``: one complete acquisition, retried."""

        def once() -> tuple[PreparedChannel, Any]:
            prep = self._prepared_for(chan, config)
            return prep, acquire(self, prep)

        def forget(kind: str) -> None:  # the channel's state is unknown after a fault
            self._prepared.pop(chan, None)

        what = f"acquisition on channel {chan} ({', '.join(f'S{o}{i}' for o, i in config.params)})"
        return call_with_retries(
            self, what, once, check=lambda r: require_finite(r[1], what), on_retry=forget
        )

    def _prepared_for(self, chan: int, config: ChannelConfig) -> PreparedChannel:
        prep = self._prepared.get(chan)
        if prep is None or prep.config != config:
            self._prepared.pop(chan, None)
            prep = prepare(self, chan, config)
            self._prepared[chan] = prep
        return prep

    def _sweep_axis(self) -> npt.NDArray[np.float64]:
        prep = self._prepared.get(self.sweep_channel)
        if prep is not None:
            return prep.stimulus.copy()
        return read_stimulus(self, self.sweep_channel)

    def _read_points(self, config: ChannelConfig) -> npt.NDArray[np.complex128]:
        chan = self._point_lru.get(config)
        if chan is not None:
            self._point_lru.move_to_end(config)
        else:
            used = set(self._point_lru.values())
            free = [c for c in self.point_channels if c not in used]
            chan = free[0] if free else self._point_lru.popitem(last=False)[1]
            self._point_lru[config] = chan
        return self._acquire(chan, config)[1]
