"""The lock never commands a knob outside its limits nor a step beyond its ``max_step``.

Issue 8, part 3: hypothesis drives :class:`labnr.lock.LockSupervisor` and
:class:`labnr.lock.LockController` on random synthetic plants (the model
circulator of ``tests/lock/synthetic_plant.py``): random knob limits and step
bounds, initial knobs anywhere within their limits (at the edges too), wrong
Jacobians (rotated, wrong signs, near-singular, random), read noise, drifts,
line-phase steps, flux jumps, instabilities and re-acquisitions that succeed,
fail or raise. The plant records every ``set_knobs`` call *before* its own
check, and the test asserts every commanded value against the knob limits in
force at that moment. The lock must also never have needed the last-line check
(no "refused command" park). The same on the virtual lab's
:class:`~labnr.lock.lab.LabPlant` is in ``tests/test_safety_limits.py``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent / "lock"))
from synthetic_plant import KNOBS, TONES, Drift, SyntheticPlant  # noqa: E402

from labnr.lock import (  # noqa: E402
    ControllerSettings,
    ErrorSignal,
    KnobSpec,
    LockController,
    LockSupervisor,
    Reacquisition,
    SupervisorSettings,
    model_jacobian,
)

SIGNAL = ErrorSignal.circulator("abc")
REL = 1e-9


class RecordingPlant(SyntheticPlant):
    """A synthetic plant that logs every command with the knobs in force when it came."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[tuple[dict[str, KnobSpec], dict[str, float]]] = []

    def set_knobs(self, values: Mapping[str, float]) -> None:
        self.commands.append((self.knobs(), dict(values)))  # before the plant's own check
        super().set_knobs(values)


def assert_commands_within_limits(plant: RecordingPlant) -> None:
    for specs, values in plant.commands:
        for name, v in values.items():
            sp = specs[name]
            assert math.isfinite(v), (name, v)
            assert sp.minimum <= v <= sp.maximum, (name, v, sp)
            step = abs(sp.distance(sp.value, v))
            assert step <= sp.max_step * (1 + REL), (name, sp.value, v, sp.max_step)


def wrong_jacobian(J: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A Jacobian the plant does not have."""
    k = J.shape[0] // 2
    if kind == "rotated":
        c = (J[:k] + 1j * J[k:]) * rng.uniform(0.2, 5) * np.exp(1j * rng.uniform(-np.pi, np.pi))
        return np.vstack([c.real, c.imag])
    if kind == "signs":
        return J * rng.choice([-1.0, 1.0], size=J.shape[1])
    if kind == "singular":
        out = J.copy()
        out[:, 2] = out[:, 1] * (1 + 1e-9)
        out[:, 3] *= 1e-9
        return out
    if kind == "random":
        return rng.normal(size=J.shape) * float(np.abs(J).max())
    return J


@st.composite
def lock_cases(draw: st.DrawFn) -> dict[str, Any]:
    amp_max = draw(st.floats(0.11, 0.5))
    edge = st.sampled_from([0.0, amp_max, amp_max * (1 - 1e-12), amp_max * 0.999])
    return {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "noise": 10 ** draw(st.floats(-4, -1.5)),
        "drift": Drift(
            phase_walk=np.radians(draw(st.floats(0, 30))),
            amplitude_walk=draw(st.floats(0, 0.05)),
            detuning_walk=draw(st.sampled_from([0.0, 1e4, 3e5])),
            phase_ramp=draw(st.floats(0, 3)),
        ),
        "amp_max": amp_max,
        "amp_step": draw(st.floats(1e-3, 0.2)) * amp_max,
        "phase_step": draw(st.floats(0.005, 1.0)),
        "amplitudes": draw(st.lists(st.one_of(st.floats(0, amp_max), edge), min_size=3, max_size=3)),  # noqa: E501
        "phase": draw(st.one_of(st.floats(-np.pi, np.pi), st.sampled_from([-np.pi, np.pi - 1e-9]))),
        "jacobian": draw(st.sampled_from(["true", "rotated", "signs", "singular", "random"])),
        "controller": ControllerSettings(
            gain=draw(st.floats(0.1, 2.0)),
            damping=10 ** draw(st.floats(-6, -1)),
            integral_gain=draw(st.floats(0, 1)),
            broyden=draw(st.booleans()),
        ),
        "reacquire": draw(st.sampled_from([None, "recalibrate", "fail", "raise"])),
        # a patient supervisor keeps correcting a plant it cannot lock (the knobs then
        # sit at their limits for many reads)
        "supervisor": SupervisorSettings(
            lost_reads=draw(st.sampled_from([8, 10**6, 10**6])),
            mismatch_fraction=draw(st.sampled_from([0.5, 2.0])),
            max_interval=draw(st.sampled_from([30.0, 300.0])),
        ),
        "events": draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["phase_step", "flux_jump", "instability"]),
                    st.floats(-1, 1),
                ),
                max_size=3,
            )
        ),
    }


def build(case: dict[str, Any]) -> tuple[RecordingPlant, LockSupervisor]:
    rng = np.random.default_rng(case["seed"])
    plant = RecordingPlant(rng, noise=case["noise"], drift=case["drift"])
    amp_max, amp_step = case["amp_max"], case["amp_step"]
    plant.limits = {
        "pump_ab_phase": (-np.pi, np.pi, case["phase_step"], "rad", True),
        **{f"pump_{t}_amplitude": (0.0, amp_max, amp_step, "V", False) for t in TONES},
    }
    J = model_jacobian(plant.model(), plant.knobs(), SIGNAL, chain=plant.chain)
    J = wrong_jacobian(J, case["jacobian"], rng)
    for t, a in zip(TONES, case["amplitudes"], strict=True):
        plant.amplitude[t] = float(a)
    plant.tone_phase["ab"] = float(case["phase"])

    def reacquire() -> Reacquisition:
        how = case["reacquire"]
        if how == "raise":
            raise RuntimeError("calibration failed")
        if how == "fail":
            return Reacquisition(False, message="no resonance found")
        plant.recalibrate()  # a calibration writes through the drivers, not the lock
        for t in TONES:  # it too must respect the limits (clipped as a real one would be)
            plant.amplitude[t] = min(plant.amplitude[t], amp_max)
        return Reacquisition(True, message="recalibrated")

    controller = LockController(KNOBS, J, case["controller"])
    relock = None if case["reacquire"] is None else reacquire
    sup = LockSupervisor(plant, controller, SIGNAL, relock, case["supervisor"])
    return plant, sup


@settings(max_examples=40, deadline=None)
@given(case=lock_cases())
def test_the_lock_commands_only_values_within_limits_and_steps(case: dict[str, Any]) -> None:
    plant, sup = build(case)
    for kind, x in case["events"]:
        sup.run(300.0)
        if kind == "phase_step":
            plant.step_line_phase("bc", np.pi * x)
        elif kind == "flux_jump":
            plant.flux_jump(50e6 * x)
        else:
            plant.start_instability(abs(x) * 1e5)
    sup.run(600.0)
    assert_commands_within_limits(plant)
    n = len(plant.commands)
    event(f"status {sup.status}")
    event("commands: " + ("0" if n == 0 else "1-9" if n < 10 else "10-99" if n < 100 else ">=100"))
    if sup.log.events("limit"):
        event("a command was clipped at a limit")
    refused = [e.message for e in sup.log.events("parked") if "refused command" in e.message]
    assert not refused, refused  # the controller's own bounds held; the last check never fired
    if sup.status == "parked" or sup.status == "instability":
        last = max((t for t, _ in plant.writes), default=-1.0)
        assert last <= plant.safe_calls[-1] + 1e-9  # nothing written after the safe state
