"""The controller on synthetic plants: convergence, Broyden, integral action, bounds."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_plant import KNOBS, TONES, Drift, SyntheticPlant, build_network

from labnr.lock import (
    ControllerSettings,
    ErrorSignal,
    KnobSpec,
    LimitViolation,
    LockController,
    LockSupervisor,
    SupervisorSettings,
    check_command,
    model_jacobian,
    network_elements,
)
from labnr.model import Network, isolator_reservoir

SIGNAL = ErrorSignal.circulator("abc")


def rotated(J: np.ndarray, scale: float, degrees: float) -> np.ndarray:
    """Every complex error component of J scaled and rotated (a wrong model Jacobian)."""
    k = J.shape[0] // 2
    c = (J[:k] + 1j * J[k:]) * scale * np.exp(1j * np.radians(degrees))
    return np.vstack([c.real, c.imag])


def true_jacobian(plant: SyntheticPlant) -> np.ndarray:
    """The plant's Jacobian now (true line phases and gains, measurement chain included)."""

    def network_of(k: Mapping[str, float]) -> Network:
        g = {t: plant.eta * k[f"pump_{t}_amplitude"] * plant.line_gain[t] for t in TONES}
        ph = {
            t: plant.line_phase[t] + (k["pump_ab_phase"] if t == "ab" else plant.tone_phase[t])
            for t in TONES
        }
        return build_network(plant.kappa, g, ph)

    return model_jacobian(network_of, plant.knobs(), SIGNAL, chain=plant.chain)


def deviation(J: np.ndarray, ref: np.ndarray, plant: SyntheticPlant) -> float:
    """Relative Frobenius distance in knob units scaled by max_step."""
    s = np.array([plant.knobs()[n].max_step for n in KNOBS])
    return float(np.linalg.norm((J - ref) * s) / np.linalg.norm(ref * s))


def lock(plant: SyntheticPlant, J: np.ndarray, **controller: object) -> LockSupervisor:
    c = LockController(KNOBS, J, ControllerSettings(**controller))  # type: ignore[arg-type]
    return LockSupervisor(plant, c, SIGNAL)


# ====================================================================== model Jacobian
def test_model_jacobian_follows_the_isolation_rule() -> None:
    """d|S_rev|/d(loop phase) = 1/2 on every path, d|S_rev|/d(g/g) = 1/2 on the paths it feeds."""
    plant = SyntheticPlant(np.random.default_rng(0), chain=False)
    J = model_jacobian(plant.model(), plant.knobs(), SIGNAL)
    phase = J[:3, 0] + 1j * J[3:, 0]
    np.testing.assert_allclose(np.abs(phase), 0.5, rtol=1e-4)
    amp = (J[:3, 1] + 1j * J[3:, 1]) * plant.amplitude_op  # per relative amplitude change
    np.testing.assert_allclose(np.abs(amp), 0.5, rtol=1e-4)
    assert np.linalg.matrix_rank(J) == 4


# ====================================================================== convergence
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_converges_from_20_degrees_and_10_percent_within_five_reads(seed: int) -> None:
    plant = SyntheticPlant(np.random.default_rng(seed))
    J = model_jacobian(plant.model(), plant.knobs(), SIGNAL, chain=plant.chain)
    plant.tone_phase["ab"] += np.radians(20)
    for t, f in zip(TONES, (1.1, 0.9, 1.1), strict=True):
        plant.amplitude[t] *= f
    assert plant.true_isolation_db() < 15
    sup = lock(plant, J)
    sup.run(120)
    assert sup.log.reads()[0].worst_isolation_db < 15
    assert sup.log.reads_until(0.0, 40.0) <= 5
    assert min(r.worst_isolation_db for r in sup.log.reads()[5:]) > 40


def test_locks_an_isolator_with_its_coherent_coupling() -> None:
    """Device-generic: two knobs (|J|, arg J) of the reservoir isolator, one complex error."""
    sig = ErrorSignal.isolator(["a", "b"])
    base = isolator_reservoir(kappa=1e6, gamma=1e6, kappa_aux=1e8)

    def network_of(k: Mapping[str, float]) -> Network:
        return base.copy().set_coupling("a", "b", g=k["J"] * 1e6, phase=k["phi"])

    op = {"J": 0.5, "phi": np.pi / 2}
    specs = {
        "J": KnobSpec("J", 0.5 * 1.1, 0.0, 1.0, 0.05),
        "phi": KnobSpec("phi", np.pi / 2 + np.radians(20), -np.pi, np.pi, 0.3, periodic=True),
    }
    J = model_jacobian(network_of, {n: KnobSpec(n, op[n], -9, 9, 0.1) for n in op}, sig)
    c = LockController(["J", "phi"], J)
    for i in range(4):
        e = sig.error(network_elements(network_of({n: s.value for n, s in specs.items()})))
        c.observe(e, specs, float(i))
        cmd = c.propose(e, specs, float(i))
        specs = {n: KnobSpec(n, cmd.values[n], s.minimum, s.maximum, s.max_step, s.unit,
                             s.periodic) for n, s in specs.items()}  # fmt: skip
    s = network_elements(network_of({n: s.value for n, s in specs.items()}))
    assert sig.isolation_db(s)[0] > 50  # from about 15 dB, noiseless, four corrections


# ====================================================================== Broyden
def test_broyden_learns_a_wrong_initial_jacobian() -> None:
    """30 % too large and rotated by 20 degrees: disturbances in random directions teach J."""
    found = []
    for broyden in (True, False):
        plant = SyntheticPlant(np.random.default_rng(3), drift=Drift(0.0, 0.0))
        Jm = model_jacobian(plant.model(), plant.knobs(), SIGNAL, chain=plant.chain)
        sup = lock(plant, rotated(Jm, 1.3, 20.0), broyden=broyden)
        sup.run(60)
        before = deviation(sup.controller.J, true_jacobian(plant), plant)
        rng = np.random.default_rng(7)
        for _ in range(30):
            plant.step_line_phase(TONES[rng.integers(3)], np.radians(3) * rng.normal())
            plant.line_gain[TONES[rng.integers(3)]] *= 1 + 0.03 * rng.normal()
            sup.run(120)
        found.append((before, deviation(sup.controller.J, true_jacobian(plant), plant)))
    (before, after), (_, unlearned) = found
    assert before == pytest.approx(0.5, abs=0.02)
    assert after < 0.5 * before
    assert unlearned == pytest.approx(before, abs=0.05)


def _linear_step(c: LockController, specs: dict[str, KnobSpec], J: np.ndarray, dk: np.ndarray,
                 t: float) -> str:  # fmt: skip
    """Observe e = J k at the present knobs, then after moving them by dk; the J status."""
    k0 = np.array([s.value for s in specs.values()])
    c.observe(J @ k0, specs, t)
    moved = {n: KnobSpec(n, s.value + d, -10, 10, s.max_step) for (n, s), d in
             zip(specs.items(), dk, strict=True)}  # fmt: skip
    specs.update(moved)
    return c.observe(J @ (k0 + dk), specs, t + 0.5).jacobian


def test_broyden_skips_tiny_steps_and_resets_a_degraded_jacobian() -> None:
    rng = np.random.default_rng(0)
    J = rng.normal(size=(4, 2))
    specs = {n: KnobSpec(n, 0.0, -10, 10, 0.1) for n in ("x", "y")}
    c = LockController(["x", "y"], J, ControllerSettings(read_noise=1e-4))
    assert _linear_step(c, specs, J, np.array([1e-6, 0.0]), 0.0) == "skipped"
    np.testing.assert_array_equal(c.J, J)
    assert _linear_step(c, specs, J, np.array([0.01, 0.0]), 1.0) == "updated"
    np.testing.assert_allclose(c.J, J, atol=1e-9)  # consistent data leave it alone
    # the learned Jacobian went bad (as after a corrupted update): it predicts worse
    # than the model on every informative step, so it is thrown away
    c.J = -2 * J
    seen = [_linear_step(c, specs, J, rng.normal(size=2) * 0.01, 2.0 + i) for i in range(4)]
    assert "reset" in seen
    np.testing.assert_allclose(c.J, J)


# ====================================================================== integral action
def test_integral_action_removes_most_of_a_steady_ramp() -> None:
    """A thermal ramp of 60 deg/hour on one line at fixed 20 s reads: PI beats P."""
    medians = {}
    for gain in (0.0, 0.1):
        plant = SyntheticPlant(
            np.random.default_rng(0), drift=Drift(0, 0, phase_ramp=np.radians(60))
        )
        J = model_jacobian(plant.model(), plant.knobs(), SIGNAL, chain=plant.chain)
        c = LockController(KNOBS, J, ControllerSettings(integral_gain=gain))
        fixed = SupervisorSettings(min_interval=20.0, max_interval=20.0)
        sup = LockSupervisor(plant, c, SIGNAL, settings=fixed)
        sup.run(3600)
        medians[gain] = np.median([r.worst_isolation_db for r in sup.log.reads()[-100:]])
    assert medians[0.1] > medians[0.0] + 3.0


# ====================================================================== limits
def _specs() -> dict[str, KnobSpec]:
    return {
        "phase": KnobSpec("phase", 3.0, -np.pi, np.pi, 0.2, "rad", periodic=True),
        "amp": KnobSpec("amp", 0.295, 0.0, 0.3, 0.01, "V"),
    }


@pytest.mark.parametrize(
    ("command", "match"),
    [
        ({"other": 0.0}, "not one the lock may move"),
        ({"amp": 0.31}, "outside its limits"),
        ({"amp": 0.28}, "exceeds its max_step"),
        ({"amp": float("nan")}, "outside its limits"),
        ({"phase": 2.7}, "exceeds its max_step"),
    ],
)
def test_check_command_refuses(command: dict[str, float], match: str) -> None:
    with pytest.raises(LimitViolation, match=match):
        check_command(_specs(), command)


def test_check_command_accepts_a_wrapped_phase() -> None:
    check_command(_specs(), {"phase": -3.1, "amp": 0.3})  # 0.18 rad the short way round


def test_steps_are_scaled_as_a_whole_and_clipped_at_limits() -> None:
    J = np.eye(2)
    c = LockController(["phase", "amp"], J, ControllerSettings(integral_gain=0.0, damping=0.0))
    cmd = c.propose(np.array([-1.0, -0.02]), _specs(), 0.0)  # wants +1 rad and +0.02 V
    assert cmd.scale == pytest.approx(0.2)  # the phase step bounds the whole step
    assert cmd.steps["phase"] == pytest.approx(0.2)
    assert cmd.values["phase"] == pytest.approx(3.2 - 2 * np.pi)  # wrapped
    assert cmd.values["amp"] == pytest.approx(0.299)
    cmd = c.propose(np.array([0.0, -1.0]), _specs(), 1.0)
    assert cmd.values["amp"] == 0.3 and cmd.limited == ("amp",)
    check_command(_specs(), cmd.values)


def test_propose_refuses_when_a_knob_is_already_outside_its_limits() -> None:
    specs = {**_specs(), "amp": KnobSpec("amp", 0.35, 0.0, 0.3, 0.01)}
    with pytest.raises(LimitViolation, match="outside its limits"):
        LockController(["phase", "amp"], np.eye(2)).propose(np.zeros(2), specs, 0.0)


@st.composite
def plants(draw: st.DrawFn) -> tuple[dict[str, KnobSpec], np.ndarray]:
    n = draw(st.integers(1, 5))
    m = draw(st.integers(1, 4)) * 2
    specs = {}
    for i in range(n):
        lo = draw(st.floats(-10, 10))
        width = draw(st.floats(1e-3, 20))
        step = draw(st.floats(1e-4, 1.0)) * width
        periodic = draw(st.booleans())
        value = lo + draw(st.floats(0, 1)) * width
        specs[f"k{i}"] = KnobSpec(f"k{i}", value, lo, lo + width, step, periodic=periodic)
    scale = 10.0 ** np.array(draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n)))
    seed = draw(st.integers(0, 2**32 - 1))
    J = np.random.default_rng(seed).normal(size=(m, n)) * scale
    return specs, J


@settings(max_examples=150, deadline=None)
@given(
    plant=plants(),
    reads=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=8, max_size=64),
    gain=st.floats(0.1, 2.0),
    integral=st.floats(0.0, 1.0),
)
def test_commands_always_respect_limits_and_step_bounds(
    plant: tuple[dict[str, KnobSpec], np.ndarray], reads: list[float], gain: float,
    integral: float,
) -> None:  # fmt: skip
    specs, J = plant
    m = J.shape[0]
    c = LockController(list(specs), J, ControllerSettings(gain=gain, integral_gain=integral))
    errors = [np.resize(np.array(reads[i:] + reads[:i]), m) for i in range(0, len(reads), m)]
    for t, e in enumerate(errors):
        c.observe(e, specs, 3.0 * t)
        cmd = c.propose(e, specs, 3.0 * t)
        check_command(specs, cmd.values)
        for name, v in cmd.values.items():
            sp = specs[name]
            assert sp.minimum <= v <= sp.maximum
            assert abs(sp.distance(sp.value, v)) <= sp.max_step * (1 + 1e-9)
        specs = {n: KnobSpec(n, cmd.values[n], s.minimum, s.maximum, s.max_step,
                             periodic=s.periodic) for n, s in specs.items()}  # fmt: skip


def test_a_jacobian_in_the_model_convention_does_not_lock_analyser_data() -> None:
    """Reads are conjugates of the model's S (e^{+j w t}); a model-convention J is mirrored."""
    net = SyntheticPlant(np.random.default_rng(0)).network()
    vna, model = network_elements(net), network_elements(net, convention="model")
    assert all(vna[k] == np.conj(model[k]) for k in vna)
    finals = {}
    for convention in ("vna", "model"):
        plant = SyntheticPlant(np.random.default_rng(0), drift=Drift(0.0, 0.0))
        J = model_jacobian(plant.model(), plant.knobs(), SIGNAL, plant.chain, convention=convention)
        plant.tone_phase["ab"] += np.radians(20)
        sup = lock(plant, J, broyden=False)
        sup.run(60)
        finals[convention] = plant.true_isolation_db()
    assert finals["vna"] > 50 and finals["model"] < 30
