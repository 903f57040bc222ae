"""The lock loop on synthetic plants: holding under drift, steps, loss of lock, instability."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from synthetic_plant import KNOBS, TONES, Drift, SyntheticPlant

from labnr.lock import (
    ErrorSignal,
    KnobSpec,
    LockController,
    LockSupervisor,
    Reacquire,
    Reacquisition,
    Reading,
    ReadScheduler,
    SupervisorSettings,
    model_jacobian,
)

SIGNAL = ErrorSignal.circulator("abc")
HOUR = 3600.0


def supervisor(
    plant: SyntheticPlant, reacquire: Reacquire | None = None, **settings: object
) -> LockSupervisor:
    J = model_jacobian(plant.model(), plant.knobs(), SIGNAL, chain=plant.chain)
    return LockSupervisor(
        plant, LockController(KNOBS, J), SIGNAL, reacquire,
        SupervisorSettings(**settings),  # type: ignore[arg-type]
    )  # fmt: skip


class Recalibration:
    """A fake calibration layer: counts calls; succeeds by re-tuning the plant, or fails."""

    def __init__(self, plant: SyntheticPlant, succeed: bool = True, raises: bool = False) -> None:
        self.plant, self.succeed, self.raises, self.calls = plant, succeed, raises, 0

    def __call__(self) -> Reacquisition:
        self.calls += 1
        if self.raises:
            raise RuntimeError("flux spectroscopy found no resonance")
        if not self.succeed:
            return Reacquisition(False, message="mode characterisation failed")
        self.plant.wait(30.0)  # the cheap nodes take some time
        self.plant.recalibrate()
        return Reacquisition(True, message="re-ran flux operating point")


# ====================================================================== holding
@pytest.mark.parametrize("seed", [0, 1])
def test_holds_isolation_for_two_hours_of_drift_within_the_duty_budget(seed: int) -> None:
    """3 deg/sqrt(h) per line phase, 0.5 %/sqrt(h) per line gain, -60 dB read noise."""
    plant = SyntheticPlant(np.random.default_rng(seed))
    sup = supervisor(plant)
    summary = sup.run(2 * HOUR)
    assert summary["duration_s"] == pytest.approx(2 * HOUR)
    assert summary["fraction_above"]["30"] == 1.0
    assert summary["fraction_above"]["40"] >= 0.99
    assert summary["measurement_duty"] <= 0.05
    assert summary["median_isolation_db"] > 45
    assert summary["relocks"] == 0 and sup.status == "done"
    assert summary["lock_acquisitions"] == plant.acquisitions == len(sup.log.reads())
    # and the device really is locked at the end (the truth, not the log)
    assert plant.true_isolation_db() > 40


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_from_a_20_degree_line_phase_step_within_five_reads(seed: int) -> None:
    plant = SyntheticPlant(np.random.default_rng(seed))
    sup = supervisor(plant)
    sup.run(600)
    t = plant.now()
    plant.step_line_phase(TONES[seed], np.radians(20) * (-1) ** seed)
    sup.run(600)
    assert sup.log.reads_until(t, 40.0) <= 5
    assert [e.event for e in sup.log.events()].count("disturbance") == 1
    assert sup.log.events("lost") == []


def test_reads_faster_when_the_drift_is_faster() -> None:
    intervals = {}
    for walk in (1.0, 6.0):
        plant = SyntheticPlant(np.random.default_rng(0), drift=Drift(np.radians(walk), 0.005))
        sup = supervisor(plant)
        sup.run(2 * HOUR)
        intervals[walk] = np.median(np.diff([r.time for r in sup.log.reads()][10:]))
    assert intervals[6.0] < intervals[1.0] / 4


def test_duty_budget_is_never_exceeded_even_during_recovery() -> None:
    plant = SyntheticPlant(np.random.default_rng(4), read_duration=1.0)  # slow reads
    sup = supervisor(plant, max_duty=0.05)
    sup.run(1800)
    plant.step_line_phase("bc", np.radians(25))
    sup.run(1800)
    spent = np.cumsum([r.duration for r in sup.log.reads()])
    ends = np.array([r.time for r in sup.log.reads()])
    # from the second read on (the first one's duration is not known in advance)
    assert np.all(spent[1:] <= 0.05 * ends[1:] + 1e-9)
    assert sup.log.reads_until(1800.0, 40.0) <= 5


def test_read_scheduler() -> None:
    s = ReadScheduler(0.05, target_error=0.005, min_interval=0.0, max_interval=300.0)
    assert s.wait(0.0, 0.0, 0.2, 0.0, 0.0) == pytest.approx(3.8)  # 0.2 s read, 5 %: 4 s
    assert s.wait(1000.0, 1.0, 0.2, 0.0, 0.0) == 0.0  # saved budget allows a burst
    assert s.desired(0.0, 1e-6, urgent=False) == pytest.approx(25.0)
    assert s.desired(0.005, 1e-6, urgent=False) == pytest.approx(12.5)  # error grew
    assert s.desired(0.0, 1e-6, urgent=True) == 0.0
    assert s.desired(0.0, 1e-12, urgent=False) == 300.0


# ====================================================================== loss of lock
@pytest.mark.parametrize(("modes", "reads"), [("a", 1), ("ab", 4)])
def test_flux_jump_is_a_model_mismatch_and_triggers_reacquisition(modes: str, reads: int) -> None:
    """Detuned modes: no knob can fix it. One mode: recognised at the first read after the
    jump; both flux-tunable modes: the knobs absorb part of it, the rest is out of reach."""
    plant = SyntheticPlant(np.random.default_rng(0))
    fake = Recalibration(plant)
    sup = supervisor(plant, fake)
    sup.run(900)
    t = plant.now()
    plant.flux_jump(0.3 * plant.kappa, modes)
    sup.run(900)
    assert fake.calls == 1
    (lost,) = sup.log.events("lost")
    assert "mismatch" in lost.message
    assert sup.last_loss is not None and sup.last_loss[1].out_of_range_fraction > 0.5
    after = [r for r in sup.log.reads() if t < r.time <= lost.time]
    assert 1 <= len(after) <= reads
    assert max(r.worst_isolation_db for r in after) < 30
    assert sup.log.summary()["relocks"] == 1 and sup.status == "done"
    assert sup.log.reads()[-1].worst_isolation_db > 40


def test_creeping_flux_drift_is_a_mismatch_before_the_isolation_collapses() -> None:
    """A detuning the knobs cannot follow, growing slowly: re-acquired while still above 30 dB."""
    plant = SyntheticPlant(np.random.default_rng(1))
    fake = Recalibration(plant)
    sup = supervisor(plant, fake)
    sup.run(300)
    for _ in range(60):  # 0.002 kappa (60 kHz) per minute
        plant.flux_jump(0.002 * plant.kappa)
        sup.run(60)
        if fake.calls:
            break
    (lost,) = sup.log.events("lost")
    assert "model mismatch (for 3 reads)" in lost.message
    assert fake.calls == 1
    before = [r.worst_isolation_db for r in sup.log.reads() if r.time <= lost.time]
    assert min(before) > 30 and before[-1] < 40


def test_knobs_stuck_at_a_limit_lose_the_lock_after_n_low_reads() -> None:
    """The ab line loses 70 % of its gain: the amplitude needed is beyond the 0.3 V limit."""
    plant = SyntheticPlant(np.random.default_rng(1))
    sup = supervisor(plant, lost_reads=25)
    sup.run(300)
    plant.line_gain["ab"] *= 0.3
    sup.run(900)
    (lost,) = sup.log.events("lost")
    assert "below 30.0 dB for 25 reads" in lost.message
    assert sup.log.events("limit") and sup.status == "parked"
    assert max(v["pump_ab_amplitude"] for _, v in plant.writes) == 0.3


@pytest.mark.parametrize("raises", [False, True])
def test_failed_reacquisition_parks_and_writes_nothing_more(raises: bool) -> None:
    plant = SyntheticPlant(np.random.default_rng(2))
    fake = Recalibration(plant, succeed=False, raises=raises)
    sup = supervisor(plant, fake)
    sup.run(600)
    plant.flux_jump(0.5 * plant.kappa)
    summary = sup.run(3600)
    assert fake.calls == 1 and sup.status == "parked"
    assert len(plant.safe_calls) == 1 and not plant.pumps_on
    assert all(t <= plant.safe_calls[0] for t, _ in plant.writes)
    events = [e.event for e in sup.log.events()]
    assert events[-3:] == ["lost", "reacquire_failed", "parked"]
    assert summary["duration_s"] < 3600
    if raises:
        assert "no resonance" in sup.log.events("reacquire_failed")[0].message
    n = len(plant.writes)
    sup.run(600)  # a parked lock stays parked
    assert len(plant.writes) == n and len(plant.safe_calls) == 1


def test_without_reacquire_a_loss_of_lock_parks() -> None:
    plant = SyntheticPlant(np.random.default_rng(3))
    sup = supervisor(plant)
    sup.run(300)
    plant.flux_jump(0.5 * plant.kappa)
    sup.run(600)
    assert sup.status == "parked" and plant.safe_calls
    assert sup.log.events("parked")[0].message == "no re-acquisition configured"


def test_reacquisitions_that_never_lock_end_in_park() -> None:
    plant = SyntheticPlant(np.random.default_rng(5))
    calls = []

    def useless() -> bool:  # claims success, changes nothing
        calls.append(plant.now())
        return True

    sup = supervisor(plant, useless, max_relocks_without_lock=2)
    sup.run(300)
    plant.flux_jump(0.5 * plant.kappa)
    sup.run(1800)
    assert len(calls) == 2 and sup.status == "parked"


# ====================================================================== instability
def test_instability_cuts_the_pumps_at_the_first_read_that_shows_it() -> None:
    plant = SyntheticPlant(np.random.default_rng(0))
    sup = supervisor(plant)
    sup.run(600)
    largest: list[tuple[float, float]] = []
    read = plant.read

    def watched() -> Reading:
        r = read()
        largest.append((r.time, r.largest()))
        return r

    plant.read = watched  # type: ignore[method-assign]
    plant.start_instability(rate=plant.kappa / 2 / 20.0)  # past threshold within ~20 s
    sup.run(600)
    assert sup.status == "instability" and not plant.pumps_on
    first_hot = next(t for t, top in largest if top > 10 ** (3 / 20))
    assert largest[-1][0] == first_hot  # no read after the first one above +3 dB
    assert plant.safe_calls == [pytest.approx(first_hot)]  # cut in the same cycle
    assert all(t < first_hot for t, _ in plant.writes)  # and nothing written since
    (cut,) = sup.log.events("instability")
    assert "gain limit" in cut.message or "grew" in cut.message


class GrowingPlant:
    """A minimal plant whose every |S| grows by 1.2 dB per read (gain rising without bound)."""

    def __init__(self) -> None:
        self.t, self.n, self.acquisitions, self.safe, self.writes = 0.0, 0, 0, [], []

    def knobs(self) -> dict[str, KnobSpec]:
        return {"x": KnobSpec("x", 0.0, -1.0, 1.0, 0.1)}

    def set_knobs(self, values: Mapping[str, float]) -> None:
        self.writes.append(dict(values))

    def read(self) -> Reading:
        self.t += 0.1
        self.n += 1
        self.acquisitions += 1
        g = 0.8 * 10 ** (1.2 * self.n / 20)
        return Reading(self.t, {"S_b_a": g + 0j, "S_a_b": 0.01 * g + 0j}, 0.1)

    def now(self) -> float:
        return self.t

    def wait(self, seconds: float) -> None:
        self.t += seconds

    def safe_state(self) -> None:
        self.safe.append(self.t)


def test_growing_gain_is_cut_before_the_gain_limit() -> None:
    plant = GrowingPlant()
    sig = ErrorSignal.isolator(["a", "b"])
    c = LockController(["x"], np.array([[1.0], [0.0]]))
    sup = LockSupervisor(plant, c, sig)  # type: ignore[arg-type]
    sup.run(100)
    assert sup.status == "instability" and len(plant.safe) == 1
    tops = [r.forward_db[0] for r in sup.log.reads()]
    assert tops[-1] < 3.0 and tops[-1] > 0.0  # grew over two reads, still below +3 dB
    assert "grew" in sup.log.events("instability")[0].message


def test_ctrl_c_switches_the_pumps_off() -> None:
    plant = SyntheticPlant(np.random.default_rng(0))
    sup = supervisor(plant)
    sup.run(60)

    def interrupt() -> Reading:
        raise KeyboardInterrupt

    plant.read = interrupt  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        sup.run(60)
    assert plant.safe_calls and sup.status == "interrupted"
    assert [e.event for e in sup.log.events()][-2:] == ["interrupted", "parked"]
