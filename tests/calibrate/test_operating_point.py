"""Operating-point solver on device models built from the presets' true numbers."""

from __future__ import annotations

import numpy as np
import pytest

from labnr.calibrate.operating_point import (
    DeviceModel,
    ModeModel,
    ToneModel,
    solve_operating_point,
)
from labnr.sim.spec import load_device  # test side: the presets' truth makes the model


def model_of(device: str, tone_names: dict[str, str]) -> DeviceModel:
    spec = load_device(device)
    modes = {n: ModeModel(m.frequency, m.kappa_ext, m.kappa_int) for n, m in spec.modes.items()}
    tones = {}
    for link in spec.links:
        line = next(
            ln for ln in spec.pump_lines.values() if tone_names[f"{link.a}{link.b}"] == ln.name
        )
        att = 10 ** (-line.attenuation_db / 20)
        stark = {n: m.stark_per_volt2 * att**2 for n, m in spec.modes.items()}
        tones[f"{link.a}{link.b}"] = ToneModel(
            (link.a, link.b), link.kind, link.coupling_per_volt * att, line.phase, 0.3, stark
        )
    ports = [
        n for n, m in sorted(spec.modes.items(), key=lambda x: x[1].vna_port or 99) if m.vna_port
    ]
    return DeviceModel(modes, tones, ports)


def test_jpc_circulator_operating_point() -> None:
    model = model_of("jpc_circulator", {"ab": "ab", "bc": "bc", "ca": "ca"})
    fwd = [("b", "a"), ("c", "b"), ("a", "c")]
    rev = [(i, o) for o, i in fwd]
    op = solve_operating_point(model, fwd, rev)
    assert op.success, op.message
    assert op.isolation_db > 60
    assert op.insertion_loss_db < 0.2  # ~1 % internal loss
    assert op.reflection_db < -30
    # the loop flux (tone phases + line phases) is +-pi/2 for the chosen sense
    loop = sum(op.settings.phase[t] + model.tones[t].theta for t in ("ab", "bc"))
    loop -= op.settings.phase["ca"] + model.tones["ca"].theta  # c-a link runs a -> c
    assert abs(np.angle(np.exp(1j * loop))) == pytest.approx(np.pi / 2, abs=0.05)
    # Stark shifts: the pumps sit on the shifted differences
    f = model.shifted_frequencies(op.settings.amplitude)
    assert op.settings.frequency["ab"] == pytest.approx(f["b"] - f["a"])
    assert f["a"] < model.modes["a"].frequency


def test_reverse_sense_is_the_other_solution() -> None:
    model = model_of("jpc_circulator", {"ab": "ab", "bc": "bc", "ca": "ca"})
    fwd = [("a", "b"), ("b", "c"), ("c", "a")]
    op = solve_operating_point(model, fwd, [(i, o) for o, i in fwd])
    assert op.success and op.isolation_db > 60


def test_em_isolator_operating_point() -> None:
    names = {"a1m1": "iq1", "a2m1": "iq2", "a1m2": "iq1", "a2m2": "iq2"}
    model = model_of("em_circulator", names)
    op = solve_operating_point(model, [("a2", "a1")], [("a1", "a2")])
    assert op.success, op.message
    assert op.isolation_db > 40
    assert op.insertion_loss_db < 3.0  # the mechanical baths take some (Bernier-type device)
