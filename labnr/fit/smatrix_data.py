r"""The data of a global S-matrix fit: traces, offsets, pump settings, frame bookkeeping.

:class:`SMatrixData` holds the measured S-matrices of ``K`` pump settings on a
common offset axis :math:`\delta` (the layout of :func:`labnr.measure.load`,
with the knob axes flattened into one *setting* axis), the known amplitude and
phase of every pump tone at every setting, and the two frequency facts the
model needs from the run's metadata (see :mod:`labnr.fit.smatrix_model`):

- :math:`e_{oi} = f_i + c_{oi} - f_o`, where the receiver of element
  :math:`(o, i)` sits relative to the output band centre :math:`f_o`
  (:math:`c_{oi}` is the receiver offset), and
- :math:`u_m = -e_{m,r}`, the offset of port mode :math:`m`'s rotating frame
  (fixed by the pumps) from its band centre, relative to the first port
  :math:`r`.

Both vanish when the pumps sit at the differences of the band centres, the
usual case (``labnr.measure`` sets the pumps from the config's mode frequencies
and uses those as band centres).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from labnr.fit.result import estimate_noise


@dataclass
class SMatrixData:
    """Measured S-matrices of several pump settings, ready for :func:`fit_smatrix`.

    Parameters
    ----------
    S : numpy.ndarray
        Complex, shape (K, F, P, P) indexed ``[setting, offset, out, in]``;
        NaN marks elements that were not measured.
    offsets : numpy.ndarray
        Offsets :math:`\\delta` from the band centres, Hz, shape (F,).
    ports : sequence of str
        Port (mode) names of the matrix axes.
    amplitudes, phases : mapping
        ``{tone: (K,) array}``: tone amplitude (V) and phase (rad) at every
        setting (needed for pump-mode links and Stark coefficients).
    excess : numpy.ndarray, optional
        :math:`e_{oi}`, Hz, (P, P); default zeros.
    run_id : int or str, optional
        The run the data came from.
    labels : list of str, optional
        One label per setting (for plots), e.g. ``"pump_bc_phase=0.3"``.
    """

    S: np.ndarray
    offsets: np.ndarray
    ports: Sequence[str]
    amplitudes: Mapping[str, np.ndarray] = field(default_factory=dict)
    phases: Mapping[str, np.ndarray] = field(default_factory=dict)
    excess: np.ndarray | None = None
    run_id: int | str | None = None
    labels: list[str] | None = None

    def __post_init__(self) -> None:
        S = np.asarray(self.S, dtype=complex)
        if S.ndim == 3:
            S = S[None]
        self.offsets = np.asarray(self.offsets, dtype=float).reshape(-1)
        self.ports = list(self.ports)
        P = len(self.ports)
        if S.ndim != 4 or S.shape[1:] != (self.offsets.size, P, P):
            raise ValueError(
                f"S has shape {S.shape}; expected (settings, {self.offsets.size} offsets, "
                f"{P}, {P}) for ports {self.ports}"
            )
        self.S = S
        K = S.shape[0]
        self.amplitudes = {
            t: _per_setting(v, K, f"amplitude of tone {t!r}") for t, v in self.amplitudes.items()
        }
        self.phases = {
            t: _per_setting(v, K, f"phase of tone {t!r}") for t, v in self.phases.items()
        }
        if set(self.amplitudes) != set(self.phases):
            raise ValueError(
                f"tones with amplitudes {sorted(self.amplitudes)} and with phases "
                f"{sorted(self.phases)} differ; give both for every tone"
            )
        self.excess = np.zeros((P, P)) if self.excess is None else np.asarray(self.excess, float)
        if self.excess.shape != (P, P):
            raise ValueError(f"excess has shape {self.excess.shape}; expected ({P}, {P})")
        if self.labels is None:
            self.labels = [f"setting {k}" for k in range(K)]
        if len(self.labels) != K:
            raise ValueError(f"{len(self.labels)} labels for {K} settings")
        if not np.any(np.isfinite(S)):
            raise ValueError("S holds no finite value: nothing was measured")

    @property
    def settings(self) -> int:
        """Number of pump settings K."""
        return int(self.S.shape[0])

    def select(self, settings: Sequence[int]) -> SMatrixData:
        """The data of some settings only (same offsets, ports and frame facts)."""
        idx = list(settings)
        return SMatrixData(
            self.S[idx],
            self.offsets,
            self.ports,
            {t: v[idx] for t, v in self.amplitudes.items()},
            {t: v[idx] for t, v in self.phases.items()},
            excess=self.excess,
            run_id=self.run_id,
            labels=[self.labels[k] for k in idx] if self.labels else None,
        )

    @property
    def shift(self) -> np.ndarray:
        """:math:`u_m` of every port relative to the first, Hz (P,)."""
        return -self.excess[:, 0]

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of measured (finite) points, (K, F, P, P)."""
        return np.isfinite(self.S)

    def noise(self, delays: np.ndarray | None = None) -> np.ndarray:
        r"""Per-quadrature noise σ of every element, (P, P), from second differences.

        Each element's traces (all settings) are first multiplied by
        :math:`e^{2\pi i\delta\tau_{oi}}` to remove the cable delay (whose
        curvature would otherwise dominate the second differences), then
        :func:`labnr.fit.result.estimate_noise` is applied.

        Parameters
        ----------
        delays : numpy.ndarray, optional
            Total delay of every element, s, (P, P).

        Returns
        -------
        numpy.ndarray
            σ per element; NaN where an element was not measured or σ cannot
            be estimated (fewer than 5 points, or no noise at all).
        """
        P = len(self.ports)
        out = np.full((P, P), np.nan)
        for o in range(P):
            for i in range(P):
                d = self.S[:, :, o, i]
                if not np.all(np.isfinite(d)):
                    continue
                if delays is not None:
                    d = d * np.exp(2j * np.pi * self.offsets * delays[o, i])[None]
                try:
                    out[o, i] = estimate_noise(d, axis=-1)
                except ValueError:  # too few points, or noiseless: leave NaN
                    pass
        return out

    @classmethod
    def from_dataset(
        cls,
        ds: xr.Dataset,
        *,
        amplitudes: Mapping[str, Any] | None = None,
        phases: Mapping[str, Any] | None = None,
    ) -> SMatrixData:
        """Data of a run loaded with :func:`labnr.measure.load`.

        The knob axes (grid layout) or the ``point`` axis are flattened into the
        setting axis, dropping unmeasured points. Tone amplitudes and phases come
        from the knob coordinates (``pump_<tone>_amplitude``, ``pump_<tone>_phase``)
        where a tone setting was swept, else from the station snapshot (the
        pump's tone submodules; amplitude 0 when the pump's output was off);
        ``amplitudes``/``phases`` override both.

        Parameters
        ----------
        ds : xarray.Dataset
            A run with ``S(knobs..., frequency, out, in)`` and labnr attrs.
        amplitudes, phases : mapping, optional
            ``{tone: value or (K,) values}`` overrides, V and rad.
        """
        if "S" not in ds:
            raise ValueError(f"dataset of run {ds.attrs.get('run_id')} has no variable 'S'")
        S = ds["S"]
        lead = [d for d in S.dims if d not in ("frequency", "out", "in")]
        S = S.transpose(*lead, "frequency", "out", "in")
        if lead:
            S = S.stack(setting=lead)
        else:
            S = S.expand_dims("setting")
        S = S.transpose("setting", "frequency", "out", "in")
        measured = np.asarray(np.isfinite(S).any(dim=("frequency", "out", "in")))
        S = S.isel(setting=np.flatnonzero(measured))
        ports = [str(p) for p in ds["out"].values]
        if [str(p) for p in ds["in"].values] != ports:
            raise ValueError("the dataset's 'out' and 'in' axes list different modes")
        knobs = _knob_values(S, lead)
        amps, phs = _tone_settings(ds, knobs, S.sizes["setting"])
        amps.update({t: v for t, v in (amplitudes or {}).items()})
        phs.update({t: v for t, v in (phases or {}).items()})
        for t in set(amps) ^ set(phs):  # a tone given only one way: the other is 0
            (phs if t in amps else amps)[t] = 0.0
        labels = [
            ", ".join(f"{n}={v[k]:.4g}" for n, v in knobs.items()) or "single setting"
            for k in range(S.sizes["setting"])
        ]
        return cls(
            np.asarray(S.values),
            np.asarray(ds["frequency"].values, dtype=float),
            ports,
            amps,
            phs,
            excess=_excess(ds.attrs, ports),
            run_id=ds.attrs.get("run_id"),
            labels=labels,
        )


def _per_setting(value: Any, K: int, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full(K, float(arr))
    if arr.shape != (K,):
        raise ValueError(f"{what}: got shape {arr.shape}; expected a scalar or ({K},)")
    return arr


def _knob_values(S: xr.DataArray, lead: list[str]) -> dict[str, np.ndarray]:
    """Knob values per setting (grid: the stacked coordinates; points: the point coords)."""
    out: dict[str, np.ndarray] = {}
    for name, coord in S.coords.items():
        if name in ("setting", "frequency", "out", "in", "acquisition_order", "point"):
            continue
        if coord.dims == ("setting",) and np.issubdtype(coord.dtype, np.number):
            out[str(name)] = np.asarray(coord.values, dtype=float)
    return out


def _tone_settings(ds: xr.Dataset, knobs: Mapping[str, np.ndarray], K: int) -> tuple[dict, dict]:
    """Tone amplitude and phase per setting, from knobs or the snapshot."""
    config = ds.attrs.get("config") or {}
    tones = list(((config.get("pumps") or {}).get("tones") or {}).keys())
    snap = _snapshot_tones(ds.attrs.get("snapshot") or {}, tones)
    amps: dict[str, Any] = {}
    phs: dict[str, Any] = {}
    for t in tones:
        base = snap.get(t, {})
        for key, store in (("amplitude", amps), ("phase", phs)):
            knob = f"pump_{t}_{key}"
            if knob in knobs:
                store[t] = np.asarray(knobs[knob], dtype=float)
            elif key in base:
                store[t] = np.full(K, float(base[key]))
    for knob in knobs:
        if knob.startswith("pump_") and knob.endswith("_frequency"):
            raise ValueError(
                f"knob {knob!r}: a swept pump frequency moves the rotating frames with every "
                "point; fit each point on its own instead"
            )
    return amps, phs


def _snapshot_tones(snapshot: Mapping[str, Any], tones: Sequence[str]) -> dict[str, dict]:
    """``{tone: {"amplitude": V, "phase": rad}}`` from a QCoDeS station snapshot."""
    instruments = (snapshot.get("station") or {}).get("instruments") or {}
    for inst in instruments.values():
        subs = inst.get("submodules") or {}
        found = {}
        for t in tones:
            params = (subs.get(t) or {}).get("parameters") or {}
            if "amplitude" in params and "phase" in params:
                found[t] = {k: params[k].get("value") for k in ("amplitude", "phase")}
        if found:
            output = ((inst.get("parameters") or {}).get("output") or {}).get("value", True)
            if output is False:
                for v in found.values():
                    v["amplitude"] = 0.0
            return {t: {k: v for k, v in d.items() if v is not None} for t, d in found.items()}
    return {}


def _excess(attrs: Mapping[str, Any], ports: Sequence[str]) -> np.ndarray:
    """:math:`e_{oi} = f_i + c_{oi} - f_o` from the band centres and receiver offsets."""
    centres = attrs.get("band_centres") or {}
    offsets = attrs.get("receiver_offsets") or {}
    mult = attrs.get("receiver_multipliers") or {}
    P = len(ports)
    e = np.zeros((P, P))
    for o, po in enumerate(ports):
        for i, pi in enumerate(ports):
            key = f"{po},{pi}"
            if mult.get(key, 1) != 1:
                raise NotImplementedError(
                    f"element {key} is measured after a gain (conjugating) process; the "
                    "S-matrix fit supports frequency-conversion links only"
                )
            if po in centres and pi in centres and key in offsets:
                e[o, i] = centres[pi] + offsets[key] - centres[po]
    e[np.abs(e) < 1e-3] = 0.0
    return e
