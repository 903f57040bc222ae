"""What labnr last set on a flux source, kept across processes.

A flux ramp refuses to start when the level it reads back disagrees with what
labnr last commanded by ``max_step`` or more (``labnr.drivers.flux_ramp``).
Within one process the driver remembers; this module makes the memory survive
the process — a crash, ``kill -9``, the next day's run — so that a source
whose read-back lies (a wrong reply, a proxy, a firmware fault) is caught by a
fresh process too, before its first step.

The record is a small JSON file next to the experiment's database,
``<database>.flux.json``, written atomically (no-follow) *before* each ramp
segment runs, with the span of levels the output may be anywhere in while it
runs. It names the source by its VISA address and its confirmed ``*IDN?``
reply; a record of another source (or of an embedded virtual lab, served on
fresh ports each time) is ignored.

With a record attached, a ramp from a non-zero level that labnr has no record
of setting (a fresh lab, the level set by hand) is refused too: two agreeing
reads cannot tell a constant read-back lie from the truth. When the level was
set or changed on purpose outside labnr, adopt it as read once, after checking
it on the instrument: ``labnr flux adopt CONFIG``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from labnr.fileio import write_atomic

__all__ = ["FluxRecord", "record_path"]

log = logging.getLogger(__name__)


def record_path(database: Path) -> Path:
    """The record file of the lab whose QCoDeS database is ``database``."""
    return database.with_name(database.name + ".flux.json")


def _source_key(flux: Any) -> dict[str, str]:
    """Address and confirmed ``*IDN?`` reply of the flux bias's current source."""
    inst = flux.source.instrument
    idn = getattr(inst, "confirmed_idn", None) or {}
    return {
        "address": str(getattr(inst, "labnr_address", None) or getattr(inst, "address", "")),
        "idn": str(idn.get("reply", "")),
    }


class FluxRecord:
    """The persisted ``commanded`` span of one flux bias (see the module doc).

    Parameters
    ----------
    path : Path
        The record file (:func:`record_path`).
    flux : FluxBias
        The connected flux bias (``flux.source`` a ``CurrentSource``).
    """

    def __init__(self, path: Path, flux: Any) -> None:
        self.path = Path(path)
        self.flux = flux
        self._key = _source_key(flux)

    def read(self) -> tuple[float, float] | None:
        """The stored (low, high) span in A for this source, or None (none, other source)."""
        if self.path.is_symlink() or not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            low, high = float(data["low"]), float(data["high"])
            same = all(data.get(k) == v for k, v in self._key.items())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("flux record %s unreadable (%s): ignored", self.path, exc)
            return None
        if not same or not (math.isfinite(low) and math.isfinite(high)):
            return None
        return (low, high)

    def attach(self) -> tuple[float, float] | None:
        """Declare the stored span to the driver, then keep the file up to date.

        Returns
        -------
        tuple of float or None
            The span declared (A), None when there was no record of this source.
        """
        span = self.read()
        if span is not None:
            self.flux.expect_current(*span)
            log.info("flux record %s: labnr last left %s at %.9g..%.9g A",
                     self.path, self.flux.name, *span)  # fmt: skip
        self.flux.source.on_commanded = self.write
        self.flux.source.adopt_unknown_level = False  # a level nobody vouched for: refused
        return span

    def write(self, low: float, high: float) -> None:
        """Store the span (A) atomically; a failed write is logged, never raised mid-ramp."""
        body = {**self._key, "low": float(low), "high": float(high), "time": time.time()}
        try:
            write_atomic(self.path, json.dumps(body, indent=1) + "\n")
        except OSError as exc:
            log.error("flux record %s could not be written: %s", self.path, exc)

    def adopt(self) -> float | None:
        """Adopt the level as read now (two agreeing reads) as what labnr last set.

        Returns
        -------
        float or None
            The level adopted, A; None when the output is off (nothing flows; the
            next output-on programs 0 A first) and the record is removed.
        """
        if not self.flux.source.output_enabled():
            if self.path.is_file() and not self.path.is_symlink():
                self.path.unlink()
            return None
        level = float(self.flux.source.verified_level())
        self.flux.expect_current(level)
        self.write(level, level)
        return level

    def detach(self) -> None:
        """Stop keeping the file up to date (the session's close)."""
        if self.flux.source.on_commanded == self.write:
            self.flux.source.on_commanded = None
