"""Safety limits, proven on what the emulated instruments received (issue 8, part 3).

No path through labnr may command a pump tone above its amplitude limit or
move the flux faster than its ramp rate (or in a step larger than its
``max_step``, or by a jump). Hypothesis drives the pump drivers, the sweeps of
:mod:`labnr.measure` and the config with random requests (out-of-range, NaN,
inf included); every request is either refused with a ``ValueError``-family
error before anything is applied, or executed. Either way the limits are
asserted on the virtual lab's record of *every* level its instruments applied
(:meth:`labnr.sim.lab.VirtualLab.command_history`), not on what labnr believes
it sent. The lock's share is in ``tests/test_safety_limits_lock.py``.

The sessions are module-scoped (opening one takes seconds) on copies of the
shipped configs whose limits differ from the station's and from the hardware's:
tone ``ab`` at 0.25 V (a level the CW sources cannot hit exactly in 0.01 dB
steps), the flux at 10 uA/s in 2 uA steps (narrower than the station file's
100 uA/s and 10 uA), and on the AWG a ``max_amplitude`` of 1 V that the
channel's full scale (0.375 V) overrides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qcodes as qc
import yaml
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from labnr.config import load_config
from labnr.drivers.pumps import build_pump
from labnr.lock import ErrorSignal, LockController, LockSupervisor, SupervisorSettings
from labnr.lock.lab import LabPlant
from labnr.measure import map_pumps, sweep_flux, sweep_pump_amplitude
from labnr.measure.plan import nominal_pump_frequency
from labnr.session import LabSession, open_lab

ROOT = Path(__file__).resolve().parents[1]
#: Relative tolerance of a limit check (float arithmetic only, far below any rounding step).
REL = 1e-9
JPC_LIMITS = {"ab": 0.25, "bc": 0.3, "ca": 0.3}
#: A/s, A: narrower than station_sim.yaml; a step lasts 0.2 s (the GS200's shortest is 0.1 s)
FLUX_RATE, FLUX_STEP = 10e-6, 2e-6
EM_LIMITS = {"p11": 1.0, "p12": 0.3, "p21": 0.3, "p22": 0.3}
MIN_CW = 2.3e-7  # V: the SGS100A's lowest level, -120 dBm
AWG_FULL_SCALE = 0.375  # V: the AWG5208's 0.75 Vpp (no DC option) / 2

SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


# ---------------------------------------------------------------------- sessions
def _config(tmp: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    src = ROOT / "configs" / name
    cfg = yaml.safe_load(src.read_text())
    cfg["station"] = str((src.parent / cfg["station"]).resolve())
    cfg["storage"] = {"database": str(tmp / "labnr.db"), "data_dir": str(tmp / "data")}
    edit(cfg)
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _jpc_edit(cfg: dict[str, Any]) -> None:
    for tone, limit in JPC_LIMITS.items():
        cfg["pumps"]["tones"][tone]["max_amplitude"] = f"{limit} V"
    cfg["flux"].update(ramp_rate=f"{FLUX_RATE * 1e6:g} uA/s", max_step=f"{FLUX_STEP * 1e6:g} uA")


def _em_edit(cfg: dict[str, Any]) -> None:
    for tone, limit in EM_LIMITS.items():
        cfg["pumps"]["tones"][tone]["max_amplitude"] = f"{limit} V"


#: Tone frequencies at the start of each session, by config name (strategies must not
#: depend on the state the previous examples left).
NOMINAL: dict[str, dict[str, float]] = {}


def _session(tmp: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> Iterator[LabSession]:
    old = qc.config.core.db_location
    session = open_lab(_config(tmp, name, edit))
    NOMINAL[session.config.name] = {t.short_name: t.frequency() for t in session.pump}
    try:
        yield session
    finally:
        session.close()
        qc.config.core.db_location = old


@pytest.fixture(scope="class")
def jpc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabSession]:
    """JPC circulator, limits of JPC_LIMITS / FLUX_*, flux calibrated and on at zero flux."""
    for session in _session(tmp_path_factory.mktemp("jpc"), "sim_jpc_circulator.yaml", _jpc_edit):
        truth = session.virtual_lab.spec.flux
        session.flux.current_per_flux_quantum(truth.current_per_flux_quantum)
        session.flux.offset_current(truth.offset_current)
        session.flux.output(True)
        yield session


@pytest.fixture(scope="class")
def em(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabSession]:
    """Electromechanical circulator on the AWG with IQ mixers, limits of EM_LIMITS."""
    yield from _session(tmp_path_factory.mktemp("em"), "sim_em_circulator.yaml", _em_edit)


# ---------------------------------------------------------------------- the assertions
def tone_limit(session: LabSession, tone: str) -> float:
    """The limit the driver enforces: the config's, or the hardware's if lower."""
    return float(session.pump.tone(tone).amplitude.vals.limit)


def allowed(session: LabSession, tone: str, value: float) -> bool:
    """0 (off), or between the source's lowest level and the tone's limit."""
    floor = session.pump.tone(tone).amplitude.vals.floor
    return value == 0 or floor <= value <= tone_limit(session, tone)


def assert_pump_limits(session: LabSession) -> None:
    """Every level the pump hardware applied since the last clear is within its limit."""
    history = session.virtual_lab.command_history()
    tones = session.config.pumps.tones
    if session.config.pumps.backend == "cw":
        for tone, t in tones.items():
            limit = tone_limit(session, tone)
            assert limit <= t.max_amplitude
            rec = history.sources[t.source]  # a level kept with RF off is no tone
            assert rec.max_volts_on <= limit * (1 + REL), (tone, limit, list(rec.entries)[-5:])
        return
    mixers = session.config.pumps.mixers
    awg = history.awg
    assert awg is not None
    for name, m in mixers.items():
        # a tone's amplitude is that of each of its I and Q sinusoids (no imbalance
        # correction in these configs): a channel never exceeds the sum of its tones'
        # limits, nor its full scale
        budget = sum(tone_limit(session, n) for n, t in tones.items() if t.iq == name)
        for ch in (m.i, m.q):
            assert awg.max_peak_sample.get(ch, 0.0) <= 1 + REL, (ch, list(awg.entries)[-5:])
            peak = awg.max_peak_volts.get(ch, 0.0)
            assert peak <= min(budget, AWG_FULL_SCALE) * (1 + REL), (ch, peak, budget)


def assert_flux_limits(session: LabSession) -> None:
    """The flux source never jumped, never sloped faster than ramp_rate, stepped <= max_step."""
    rec = session.virtual_lab.command_history().flux
    assert rec is not None
    rate, step = session.flux.ramp_rate(), session.flux.max_step()
    assert (rate, step) == (FLUX_RATE, FLUX_STEP)
    assert rec.max_jump == 0.0, list(rec.breakpoints)[-5:]
    assert rec.max_rate <= rate * (1 + REL), (rec.max_rate, rate)
    assert rec.max_program_step <= step * (1 + REL), (rec.max_program_step, step)
    assert rec.max_segment <= step * (1 + REL), (rec.max_segment, step)


def applied(session: LabSession) -> tuple[Any, ...]:
    """A fingerprint of everything applied (changes with any level or output change)."""
    h = session.virtual_lab.command_history()
    src = tuple((len(r.entries), r.entries[-1] if r.entries else None) for r in h.sources.values())
    awg = None if h.awg is None else (len(h.awg.entries), h.awg.entries[-1] if h.awg.entries else 0)
    flux = None if h.flux is None else (len(h.flux.breakpoints), len(h.flux.programs))
    return src, awg, flux


def refused_cleanly(action: Callable[[], Any], session: LabSession, exact: bool = True) -> bool:
    """Run ``action``; True if refused with a ValueError/TypeError before anything was applied.

    ``exact``: not even a query was sent (the virtual clock did not move).
    """
    before, t0 = applied(session), session.virtual_lab.clock.now
    try:
        action()
    except (ValueError, TypeError) as exc:
        assert str(exc)
        assert applied(session) == before, f"refused after applying something: {exc}"
        if exact:
            assert session.virtual_lab.clock.now == t0, f"refused after sending: {exc}"
        _event("refused")
        return True
    _event("executed")
    return False


def _event(name: str) -> None:
    if currently_in_test_context():  # hypothesis statistics: how many requests ran
        event(name)


def refusal(tone: Any, value: float) -> Exception:
    """The error the tone's amplitude validator raises for ``value``."""
    with pytest.raises((ValueError, TypeError)) as info:
        tone.amplitude.validate(value)
    return info.value


# ---------------------------------------------------------------------- strategies
BAD = st.sampled_from([math.nan, math.inf, -math.inf])


def amplitudes(limit: float) -> st.SearchStrategy[float]:
    """Mostly allowed values (so that most requests run), the edges, out of range, NaN/inf."""
    edge = st.sampled_from([0.0, limit, float(np.nextafter(limit, np.inf)), limit * 1.01])
    inside = st.floats(0.0, limit)
    return st.one_of(inside, inside, inside, st.floats(-1.0, 2 * limit), edge, BAD)


def tone_requests(session: LabSession) -> st.SearchStrategy[tuple[str, dict[str, float]]]:
    tones = list(session.config.pumps.tones)

    @st.composite
    def one(draw: st.DrawFn) -> tuple[str, dict[str, float]]:
        tone = draw(st.sampled_from(tones))
        f0 = NOMINAL[session.config.name][tone]
        values = {
            "amplitude": draw(amplitudes(tone_limit(session, tone))),
            "phase": draw(st.one_of(st.floats(-20, 20), st.floats(-20, 20), BAD)),
            # (the QCoDeS SGS100A driver allows 20 GHz, the source 12.75 GHz: not a safety limit)
            "frequency": draw(
                st.one_of(*[st.floats(f0 - 1e6, f0 + 1e6)] * 3, st.floats(-1e9, 12e9), BAD)
            ),
        }
        keys = draw(st.lists(st.sampled_from(list(values)), min_size=1, max_size=3, unique=True))
        return tone, {k: values[k] for k in keys}

    return one()


def run_requests(session: LabSession, requests: list[Any]) -> int:
    """Apply tone requests (single parameter, batch) and output switches; count refusals."""
    pump, refused = session.pump, 0
    for req in requests:
        if isinstance(req, bool):
            pump.output(req)
            continue
        tone, values = req
        if len(values) == 1:
            key, value = next(iter(values.items()))
            param = pump.tone(tone).parameters[key]
            refused += refused_cleanly(lambda p=param, v=value: p(v), session)
        else:
            refused += refused_cleanly(lambda t=tone, v=values: pump.set_tones({t: v}), session)
    return refused


def _requests(session: LabSession) -> st.SearchStrategy[list[Any]]:
    requests = tone_requests(session)
    return st.lists(st.one_of(requests, requests, st.booleans()), min_size=2, max_size=6)


# ====================================================================== pump drivers
# ====================================================================== sweeps
@st.composite
def sweeps(draw: st.DrawFn, session: LabSession) -> tuple[str, Any]:
    """A random sweep: half of them entirely allowed (they run), half with any values."""
    tones = list(session.config.pumps.tones)
    kind = draw(st.sampled_from(["amplitude", "map", "flux"]))
    valid = draw(st.booleans())
    if kind == "flux":
        lo, hi = session.flux.flux_limits()
        inside = st.floats(max(lo, -0.03), min(hi, 0.03))  # ramps of a few steps
        outside = st.sampled_from([lo - 1e-3, hi + 1e-3, 5.0, -5.0, math.nan, math.inf])
        pick = inside if valid else st.one_of(inside, outside)
        return kind, draw(st.lists(pick, min_size=1, max_size=3))

    def values(tone: str, most: int) -> list[float]:
        limit = tone_limit(session, tone)
        pick = st.floats(0.0, limit) if valid else amplitudes(limit)
        return draw(st.lists(pick, min_size=1, max_size=most))

    tone = draw(st.sampled_from(tones))
    if kind == "amplitude":
        return kind, (tone, values(tone, 3))
    other = draw(st.sampled_from([t for t in tones if t != tone]))
    return kind, ((tone, "amplitude"), values(tone, 2), (other, "amplitude"), values(other, 2))


def run_sweep(session: LabSession, kind: str, args: Any) -> None:
    quick = {"points": 5, "progress": False}
    if kind == "flux":
        sweep_flux(session, args, ports=["a"], **quick)
    elif kind == "amplitude":
        sweep_pump_amplitude(session, *args, paths=[("a", "a")], **quick)
    else:
        map_pumps(session, *args, paths=[("a", "a")], **quick)


# ====================================================================== config values
def test_a_config_limit_above_the_hard_cap_is_refused(tmp_path: Path) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["pumps"]["tones"]["ab"]["max_amplitude"] = "3 V"

    with pytest.raises(ValueError, match="max_amplitude"):
        load_config(_config(tmp_path, "sim_jpc_circulator.yaml", edit))


# ====================================================================== the JPC's CW pumps and flux
class TestJPC:
    """CW sources per tone and the GS200 flux bias (one session for the class)."""

    @settings(max_examples=20, **SETTINGS)
    @given(data=st.data())
    def test_cw_pump_requests_never_exceed_a_tone_limit(
        self, jpc: LabSession, data: st.DataObject
    ) -> None:
        jpc.virtual_lab.clear_command_history()
        run_requests(jpc, [True, *data.draw(_requests(jpc))])  # output on: every level plays
        assert_pump_limits(jpc)

    @settings(max_examples=15, **SETTINGS)
    @given(
        limit=st.floats(1e-3, 2.0),
        requests=st.lists(st.one_of(st.floats(-1.0, 4.0), BAD, st.just(-0.0)), max_size=5),
        at_limit=st.booleans(),
        stale_dbm=st.floats(-30.0, 20.0),
    )
    def test_a_cw_pump_built_with_any_limit_never_plays_above_it(
        self, jpc: LabSession, limit: float, requests: list[float], at_limit: bool,
        stale_dbm: float,
    ) -> None:  # fmt: skip
        """build_pump on a source left at any level (RF off), random limit and requests."""
        lab, source = jpc.virtual_lab, jpc.station.components["pump_ca"]
        jpc.pump.off()
        source.power(stale_dbm)  # what the last user left, RF off
        lab.clear_command_history()
        pump = build_pump(
            "safety_pump",
            {"backend": "cw", "tones": {"x": {"source": source, "frequency": 2.6e9}},
             "limits": {"x": limit}},
        )  # fmt: skip
        try:
            pump.output(True)
            for value in [limit] * at_limit + requests:
                x = pump.tone("x")
                if refused_cleanly(lambda v=value, x=x: x.amplitude(v), jpc):
                    assert not 0 <= value <= limit or 0 < value < MIN_CW  # (below -120 dBm)
                    assert not 0 <= value <= limit or "lowest level" in str(refusal(x, value))
                else:
                    assert 0 <= value <= limit
            rec = lab.command_history().sources["pump_ca"]
            assert rec.max_volts_on <= limit * (1 + REL), (limit, list(rec.entries)[-3:])
        finally:
            pump.close()
            source.status(False)

    @settings(max_examples=12, **SETTINGS)
    @given(data=st.data())
    def test_sweeps_refuse_up_front_or_stay_within_every_limit(
        self, jpc: LabSession, data: st.DataObject
    ) -> None:
        kind, args = data.draw(sweeps(jpc))
        jpc.virtual_lab.clear_command_history()
        if jpc.pump.output() is False:
            jpc.pump.output(True)
        if kind == "flux":
            lo, hi = jpc.flux.flux_limits()
            bad = any(not lo <= v <= hi for v in args)
        else:
            axes = (
                [(args[0], args[1])]
                if kind == "amplitude"
                else [(args[0][0], args[1]), (args[2][0], args[3])]
            )
            bad = any(not allowed(jpc, t, v) for t, vs in axes for v in vs)
        assert refused_cleanly(lambda: run_sweep(jpc, kind, args), jpc, exact=False) == bad
        assert_pump_limits(jpc)
        assert_flux_limits(jpc)

    @settings(max_examples=4, **SETTINGS)
    @given(
        seed=st.integers(0, 2**32 - 1),
        fraction=st.floats(0.8, 1.0),
        step=st.floats(0.05, 0.5),
    )
    def test_lab_lock_with_a_wrong_jacobian_keeps_every_tone_within_its_limit(
        self, jpc: LabSession, seed: int, fraction: float, step: float
    ) -> None:
        """LabPlant on the emulators: a random Jacobian drives the amplitudes to their limits."""
        lab, cfg = jpc.virtual_lab, jpc.config
        rng = np.random.default_rng(seed)
        tones = list(cfg.pumps.tones)
        modes = cfg.modes
        start = {  # at the nominal frequency: earlier tests on this session leave tones anywhere
            t: {"amplitude": fraction * tone_limit(jpc, t), "phase": float(rng.uniform(-3, 3)),
                "frequency": nominal_pump_frequency(cfg.pumps.tones[t].kind,
                                                    *(modes[m].frequency
                                                      for m in cfg.pumps.tones[t].modes))}
            for t in tones
        }  # fmt: skip
        jpc.pump.set_tones(start)
        jpc.pump.output(True)
        lab.clear_command_history()
        op = {
            "settings": {t: {**v, "frequency": jpc.pump.tone(t).frequency()}
                         for t, v in start.items()},
            "band_centres": {m: mode.frequency for m, mode in cfg.modes.items()},
        }  # fmt: skip
        fwd, rev = cfg.target.paths()
        plant = LabPlant(jpc, op, rev + fwd, amplitude_step=step, points=1,
                         clock=lambda: lab.clock.now, sleep=lab.clock.advance)  # fmt: skip
        names = list(plant.knobs())
        J = rng.normal(size=(2 * len(rev), len(names)))  # nothing like the device
        patient = SupervisorSettings(lost_reads=10**6, mismatch_fraction=2.0, gain_limit_db=60.0)
        sup = LockSupervisor(plant, LockController(names, J), ErrorSignal.from_paths(fwd, rev),
                             settings=patient)  # fmt: skip
        for _ in range(12):
            assert sup.step()
        assert len(sup.log.events("limit")) + len(sup.log.reads()) >= 12
        assert_pump_limits(jpc)
        clipped = sup.log.events("limit")
        _event("an amplitude was clipped at its limit" if clipped else "no clipping")

    def test_config_limits_are_the_drivers_limits_and_refused_above(self, jpc: LabSession) -> None:
        lab = jpc.virtual_lab
        lab.clear_command_history()
        for tone, limit in JPC_LIMITS.items():
            assert tone_limit(jpc, tone) == limit
            amp = jpc.pump.tone(tone).amplitude
            assert refused_cleanly(lambda a=amp, v=limit: a(v * 1.01), jpc)
            assert refused_cleanly(
                lambda t=tone, v=limit: jpc.pump.set_tones({t: {"amplitude": v * 1.01}}), jpc
            )  # noqa: E501
        flux = jpc.flux
        assert (flux.ramp_rate(), flux.max_step()) == (FLUX_RATE, FLUX_STEP)
        assert refused_cleanly(lambda: flux.ramp_rate(FLUX_RATE * 1.01), jpc)  # never raised
        assert refused_cleanly(lambda: flux.max_step(FLUX_STEP * 1.01), jpc)
        assert flux.current_limits == (-1e-3, 1e-3)  # the station's, narrower than the config's
        assert refused_cleanly(lambda: flux.current(1.001e-3), jpc)
        assert refused_cleanly(lambda: flux.current(math.nan), jpc)
        flux.current(flux.current() + 3.3 * FLUX_STEP)  # a ramp of several steps, at the limits
        assert_pump_limits(jpc)
        assert_flux_limits(jpc)
        rec = lab.command_history().flux
        assert rec.max_rate > 0.5 * FLUX_RATE  # the check above saw a real ramp


# ====================================================================== the AWG (after the JPC:
# two sessions cannot be open at once, so each lives in its class)
class TestAWG:
    """The electromechanical circulator's AWG pump with IQ mixers."""

    @settings(max_examples=8, **SETTINGS)
    @given(data=st.data())
    def test_awg_pump_requests_never_exceed_limits_or_full_scale(
        self, em: LabSession, data: st.DataObject
    ) -> None:
        em.virtual_lab.clear_command_history()
        requests = data.draw(st.lists(tone_requests(em), min_size=1, max_size=4))
        run_requests(em, [True, *requests])
        assert_pump_limits(em)

    def test_an_amplitude_limit_above_the_hardware_is_capped_by_it(self, em: LabSession) -> None:
        assert em.config.pumps.tones["p11"].max_amplitude == 1.0
        assert tone_limit(em, "p11") == AWG_FULL_SCALE
        amp = em.pump.tone("p11").amplitude
        assert refused_cleanly(lambda: amp(AWG_FULL_SCALE * 1.01), em)
        assert refused_cleanly(lambda: amp(0.9), em)
