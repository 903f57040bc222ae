"""Synthetic labnr runs for tests/measure (storage and plots).

Written with ``qcodes.dataset.Measurement`` in exactly the layout the measurement
core writes (docs/data_format.md); S is computed with ``labnr.model`` so that maps
and plots show real physics. Imported by conftest.py and the tests (tests/measure
is on ``sys.path`` under pytest's default import mode).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

JPC_CENTRES = {"a": 5.310e9, "b": 6.470e9, "c": 7.905e9}
KAPPA = 20e6
SMatrixFunc = Callable[[Sequence[float], np.ndarray], np.ndarray]


@dataclass
class SyntheticRun:
    """A run written to ``db``: what was planned, what was measured, and the truth."""

    run_id: int
    db: Path
    ports: list[str]
    elements: list[tuple[str, str]]
    knobs: list[tuple[str, str, np.ndarray]]  # (name, unit, planned values)
    frequency: np.ndarray
    points: np.ndarray  # (measured rows, knobs) in acquisition order
    status: str
    s_func: SMatrixFunc = field(repr=False)

    def s_at(self, knob_values: Sequence[float]) -> np.ndarray:
        """The (F, N, N) S-matrix written at ``knob_values`` (NaN where not stored)."""
        s = self.s_func(knob_values, self.frequency)
        out = np.full_like(s, np.nan + 1j * np.nan)
        pos = {p: j for j, p in enumerate(self.ports)}
        for o, i in self.elements:
            out[:, pos[o], pos[i]] = s[:, pos[o], pos[i]]
        return out


def circulator_s(knob_values: Sequence[float], freq: np.ndarray) -> np.ndarray:
    """Three-mode circulator; knobs (if any): loop phase (rad), pump amplitude (V, 0.1 = ideal)."""
    from labnr.model import circulator3

    phase = knob_values[0] if len(knob_values) > 0 else np.pi / 2
    amp = knob_values[1] if len(knob_values) > 1 else 0.1
    net = circulator3(KAPPA, g=KAPPA / 2 * amp / 0.1, loop_phase=phase)
    delay = np.exp(-2j * np.pi * freq * 3e-9)  # a cable delay, so the phase plots wind
    return net.scattering(freq, nambu=False) * delay[:, None, None]


def flux_s(knob_values: Sequence[float], freq: np.ndarray) -> np.ndarray:
    """Reflections of three SQUID-tuned modes, detuned by flux (Phi0)."""
    flux = knob_values[0]
    s = np.zeros((freq.size, 3, 3), complex)
    for j, span in enumerate((40e6, 25e6, 12e6)):
        detuning = span * (np.sqrt(abs(np.cos(np.pi * flux))) - 1) + 10e6
        k_ext, k = 0.8 * KAPPA, KAPPA
        delay = np.exp(-2j * np.pi * freq * 2e-9)
        s[:, j, j] = (1 - k_ext / (k / 2 + 1j * (freq - detuning))) * delay
    return s


def write_run(
    kind: str,
    knobs: Sequence[tuple[str, str, Sequence[float]]],
    s_func: SMatrixFunc,
    *,
    nfreq: int = 401,
    span: float = 80e6,
    elements: Sequence[tuple[str, str]] | None = None,
    limit: int | None = None,
    points: Sequence[Sequence[float]] | None = None,
) -> SyntheticRun:
    """Write one run to the current QCoDeS DB as ``labnr.measure`` does.

    ``knobs`` are (name, unit, values); points are their product, first knob
    outermost (and QCoDeS shapes are set to that grid, as the measurement core
    does), unless ``points`` lists them. ``limit`` stops early and marks the
    run ``interrupted``.
    """
    import qcodes as qc
    from qcodes.dataset import Measurement, load_or_create_experiment
    from qcodes.parameters import ManualParameter

    ports = ["a", "b", "c"]
    elements = list(elements or [(o, i) for o in ports for i in ports])
    freq = np.linspace(-span / 2, span / 2, nfreq)
    station = qc.Station(default=False)
    station.add_component(ManualParameter("vna_power", unit="dBm", initial_value=-30.0))
    exp = load_or_create_experiment("labnr_tests", sample_name="jpc")
    meas = Measurement(exp=exp, station=station, name=kind)
    for name, unit, _ in knobs:
        meas.register_custom_parameter(name, unit=unit, label=name.replace("_", " "))
    meas.register_custom_parameter(
        "frequency", unit="Hz", label="offset from band centre", paramtype="array"
    )
    setpoints = (*[k[0] for k in knobs], "frequency")
    for o, i in elements:
        meas.register_custom_parameter(
            f"S_{o}_{i}", unit="", label=f"S({o}←{i})", paramtype="array", setpoints=setpoints
        )
    if points is None:
        todo = list(itertools.product(*[k[2] for k in knobs]))
        shape = (*[len(k[2]) for k in knobs], nfreq)
        meas.set_shapes({f"S_{o}_{i}": shape for o, i in elements})
    else:
        todo = [tuple(p) for p in points]
    done = todo[:limit] if limit is not None else todo
    status = "interrupted" if len(done) < len(todo) else "completed"
    pos = {p: j for j, p in enumerate(ports)}
    with meas.run() as saver:
        ds = saver.dataset
        meta = {
            "labnr_kind": kind,
            "labnr_ports": json.dumps(ports),
            "labnr_band_centres": json.dumps(JPC_CENTRES),
            "labnr_receiver_offsets": json.dumps(
                {f"{o},{i}": JPC_CENTRES[o] - JPC_CENTRES[i] for o, i in elements}
            ),
            "labnr_receiver_multipliers": json.dumps({f"{o},{i}": 1 for o, i in elements}),
            "labnr_span": json.dumps(span),
            "labnr_config": json.dumps({"device": "jpc_circulator", "kappa": KAPPA}),
            "labnr_version": "0.1.0",
            "labnr_knobs": json.dumps([k[0] for k in knobs]),
        }
        for key, value in meta.items():
            ds.add_metadata(key, value)
        for point in done:
            s = s_func(point, freq)
            knob_vals = [(k[0], v) for k, v in zip(knobs, point, strict=True)]
            saver.add_result(
                *knob_vals,
                ("frequency", freq),
                *[(f"S_{o}_{i}", s[:, pos[o], pos[i]]) for o, i in elements],
            )
    ds.add_metadata("labnr_status", status)
    ds.add_metadata("labnr_points", len(done))
    run_id = ds.run_id
    db = Path(ds.path_to_db)
    ds.conn.close()
    return SyntheticRun(
        run_id=run_id,
        db=db,
        ports=ports,
        elements=elements,
        knobs=[(n, u, np.asarray(v, float)) for n, u, v in knobs],
        frequency=freq,
        points=np.asarray(done, float).reshape(len(done), len(knobs)),
        status=status,
        s_func=s_func,
    )


PHASES = np.linspace(-np.pi, np.pi, 21)
MAP_PHASES = np.linspace(np.pi / 2 - 0.6, np.pi / 2 + 0.6, 10)
MAP_AMPS = np.linspace(0.06, 0.14, 10)
