"""Physics of the simulated device, checked directly against labnr.model (no sockets)."""

import numpy as np
import pytest

from labnr.sim.clock import VirtualClock
from labnr.sim.device import SimDevice, SourceTone
from labnr.sim.instruments.backend import VNARequest
from labnr.sim.spec import load_device


@pytest.fixture
def jpc() -> SimDevice:
    return SimDevice(load_device("jpc_circulator"), VirtualClock(), np.random.default_rng(7))


def bare(dev: SimDevice) -> dict[str, float]:
    return dev.configure([], dev.spec.flux.offset_current, noisy=False).frequencies


def pumps(dev: SimDevice, amp: float = 0.1, detune: float = 0.0) -> list[SourceTone]:
    f = bare(dev)
    return [
        SourceTone("ab", f["b"] - f["a"] + detune, amp, 0.0),
        SourceTone("bc", f["c"] - f["b"], amp, 0.0),
        SourceTone("ca", f["c"] - f["a"], amp, 0.0),
    ]


def test_flux_law_and_offset(jpc: SimDevice) -> None:
    spec = jpc.spec
    at_sweet = bare(jpc)
    assert at_sweet["a"] == pytest.approx(spec.modes["a"].frequency)
    # A quarter flux quantum away: f_max * sqrt(cos(pi/4)); c does not tune.
    current = spec.flux.offset_current + 0.25 * spec.flux.current_per_flux_quantum
    f = jpc.configure([], current, noisy=False).frequencies
    assert f["a"] == pytest.approx(spec.modes["a"].frequency * np.sqrt(np.cos(np.pi / 4)))
    assert f["c"] == pytest.approx(spec.modes["c"].frequency)


def test_pump_matching_window(jpc: SimDevice) -> None:
    current = jpc.spec.flux.offset_current
    # On resonance: all three links active.
    assert len(jpc.configure(pumps(jpc), current, noisy=False).links) == 3
    # 1 linewidth off: still couples (in a detuned frame); 10 linewidths off: no coupling.
    cfg = jpc.configure(pumps(jpc, detune=30e6), current, noisy=False)
    assert {(lk.a, lk.b) for lk in cfg.links} >= {("a", "b")}
    cfg = jpc.configure(pumps(jpc, detune=400e6), current, noisy=False)
    assert ("a", "b") not in {(lk.a, lk.b) for lk in cfg.links}


def test_frames_and_detuning_follow_pump_frequency(jpc: SimDevice) -> None:
    # Pump ab 2 MHz above the a-b difference: in a's frame (a on resonance) b is at
    # detuning -2 MHz; bc and ca are exact, so the loop a-b-c-a does not close and the
    # ca link carries a 2 MHz mismatch.
    current = jpc.spec.flux.offset_current
    tones = pumps(jpc, amp=0.05)
    tones[0] = SourceTone("ab", tones[0].frequency + 2e6, 0.05, 0.0)
    cfg = jpc.configure(tones, current, noisy=False)
    f, F = cfg.frequencies, cfg.frames
    assert F["a"] == pytest.approx(f["a"])
    assert F["b"] - F["a"] == pytest.approx(tones[0].frequency)
    det = {m.name: m.detuning for m in cfg.network.modes}
    # the Stark shifts move both modes; the detuning is what is left of the pump offset
    assert det["b"] == pytest.approx(-2e6 + cfg.stark["b"] - cfg.stark["a"], abs=1.0)
    assert cfg.rotating
    assert sorted(abs(lk.mismatch) for lk in cfg.links)[-1] == pytest.approx(2e6, abs=1.0)


def test_rotating_loop_phase_changes_isolation_in_time(jpc: SimDevice) -> None:
    current = jpc.spec.flux.offset_current
    tones = pumps(jpc, amp=0.05)
    tones[2] = SourceTone("ca", tones[2].frequency + 0.25, 0.05, 0.0)  # 0.25 Hz loop mismatch
    cfg = jpc.configure(tones, current, noisy=False)
    S0 = cfg.network_at(0.0).scattering(0.0, nambu=False)
    S1 = cfg.network_at(2.0).scattering(0.0, nambu=False)  # half a turn later
    assert np.max(np.abs(S0 - S1)) > 0.1
    S2 = cfg.network_at(4.0).scattering(0.0, nambu=False)  # a full turn
    np.testing.assert_allclose(S0, S2, atol=1e-9)


def test_coupling_follows_amplitude_and_line(jpc: SimDevice) -> None:
    spec = jpc.spec
    cfg = jpc.configure(pumps(jpc, amp=0.1), spec.flux.offset_current, noisy=False)
    link = next(lk for lk in cfg.links if (lk.a, lk.b) == ("a", "b"))
    att = 10 ** (-spec.pump_lines["ab"].attenuation_db / 20)
    assert link.g == pytest.approx(spec.links[0].coupling_per_volt * 0.1 * att)
    assert link.phase == pytest.approx(spec.pump_lines["ab"].phase)


def test_stark_shift_scales_with_pump_power(jpc: SimDevice) -> None:
    current = jpc.spec.flux.offset_current
    f0 = bare(jpc)
    s1 = jpc.configure(pumps(jpc, amp=0.05), current, noisy=False).frequencies
    s2 = jpc.configure(pumps(jpc, amp=0.10), current, noisy=False).frequencies
    for m in "abc":
        assert (s2[m] - f0[m]) == pytest.approx(4 * (s1[m] - f0[m]), rel=1e-9)
        assert s2[m] < f0[m]  # negative Stark coefficients in the preset


def test_measured_response_equals_model_with_lines(jpc: SimDevice) -> None:
    # The noiseless response for a frequency-offset measurement b <- a is the model's
    # S_ba in the derived frames times the (true) input and output line factors.
    current = jpc.spec.flux.offset_current
    tones = pumps(jpc, amp=0.1)
    cfg = jpc.configure(tones, current, noisy=False)
    w = np.linspace(-60e6, 60e6, 201)
    f_in = cfg.frames["a"] + w
    f_rx = f_in + tones[0].frequency
    req = VNARequest("vna", f_in, f_rx, ((2, 1),), {1: -30.0}, 1e3, 1, 0.2)
    got = jpc.ideal_response(req, cfg)[(2, 1)]
    S = cfg.network.scattering(w, nambu=False)[:, 1, 0]
    li, lo = jpc.spec.chain.input_lines[1], jpc.spec.chain.output_lines[2]
    line = 10 ** ((li.gain_db + lo.gain_db) / 20) * np.exp(
        1j * (li.phase + lo.phase - 2 * np.pi * (f_in * li.delay + f_rx * lo.delay))
    )
    # the VNA reports the engineering convention: the conjugate of the model's S
    np.testing.assert_allclose(got, np.conj(S) * line, rtol=1e-9, atol=1e-15)
    # Without the frequency offset the receiver hears no converted signal.
    req_same = VNARequest("vna", f_in, f_in, ((2, 1),), {1: -30.0}, 1e3, 1, 0.2)
    assert np.max(np.abs(jpc.ideal_response(req_same, cfg)[(2, 1)])) == 0


def test_noise_floor_follows_ifbw_and_averages(jpc: SimDevice) -> None:
    f = np.full(4000, 4.0e9)  # far from every mode: |S11| = 1 through the lines
    floors = {}
    for ifbw, avg in ((1e4, 1), (1e3, 1), (1e4, 10)):
        req = VNARequest("vna", f, f, ((2, 1),), {1: 0.0}, ifbw, avg, 0.1)
        data = jpc.measure(req, [], jpc.spec.flux.offset_current)[(2, 1)]
        floors[(ifbw, avg)] = 10 * np.log10(np.var(data))
    assert floors[(1e4, 1)] - floors[(1e3, 1)] == pytest.approx(10, abs=0.5)
    assert floors[(1e4, 1)] - floors[(1e4, 10)] == pytest.approx(10, abs=0.5)
    # -90 dB at 1 kHz, 0 dBm
    assert floors[(1e3, 1)] == pytest.approx(-90, abs=0.5)


def test_leakage_sets_the_isolation_floor(jpc: SimDevice) -> None:
    f = np.full(200, 4.0e9)
    req = VNARequest("vna", f, f, ((2, 1),), {1: 20.0}, 10.0, 100, 0.1)
    data = jpc.measure(req, [], jpc.spec.flux.offset_current)[(2, 1)]
    li, lo = jpc.spec.chain.input_lines[1], jpc.spec.chain.output_lines[2]
    through = li.gain_db + lo.gain_db
    assert 20 * np.log10(np.mean(np.abs(data))) - through == pytest.approx(-55, abs=0.2)


def test_drifts_are_random_walks_on_the_virtual_clock() -> None:
    # Line phase increments over dt have variance sigma^2 dt (many seeds).
    spec = load_device("jpc_circulator")
    sigma = spec.pump_lines["ab"].phase_drift
    finals = []
    for seed in range(400):
        clock = VirtualClock()
        dev = SimDevice(spec, clock, np.random.default_rng(seed))
        clock.advance(3600.0)
        dev.advance()
        finals.append(dev.line_phase["ab"] - spec.pump_lines["ab"].phase)
    std = np.std(finals)
    assert std == pytest.approx(sigma * 60, rel=0.12)  # sqrt(3600 s) = 60
    # Nothing moves without the clock.
    clock = VirtualClock()
    dev = SimDevice(spec, clock, np.random.default_rng(0))
    dev.advance()
    assert dev.line_phase == {n: ln.phase for n, ln in spec.pump_lines.items()}


def test_unstable_device_gives_garbage_not_exceptions() -> None:
    spec = load_device("jpc_circulator")
    from dataclasses import replace

    gain_link = replace(spec.links[0], kind="gain")
    spec = replace(spec, links=[gain_link])
    dev = SimDevice(spec, VirtualClock(), np.random.default_rng(0))
    f = bare(dev)
    tone = SourceTone("ab", f["a"] + f["b"], 0.3, 0.0)  # g ~ 3x the threshold
    cfg = dev.configure([tone], spec.flux.offset_current, noisy=False)
    assert not cfg.network.is_stable()
    fr = np.linspace(f["a"] - 1e7, f["a"] + 1e7, 101)
    req = VNARequest("vna", fr, fr, ((1, 1),), {1: -30.0}, 1e3, 1, 0.1)
    data = dev.measure(req, [tone], spec.flux.offset_current)[(1, 1)]
    assert np.all(np.isfinite(data)) and np.median(np.abs(data)) > 3  # saturated, > +10 dB


def test_gain_link_frames_use_the_sum() -> None:
    # A two-mode squeezing tone at f_a + f_b: frame_b = f_pump - frame_a, squeezing in model.
    spec = load_device("jpc_circulator")
    from dataclasses import replace

    spec = replace(spec, links=[replace(spec.links[0], kind="gain")])
    dev = SimDevice(spec, VirtualClock(), np.random.default_rng(0))
    f = bare(dev)
    tone = SourceTone("ab", f["a"] + f["b"] + 1e6, 0.01, 0.3)
    cfg = dev.configure([tone], spec.flux.offset_current, noisy=False)
    assert cfg.frames["a"] + cfg.frames["b"] == pytest.approx(tone.frequency)
    assert cfg.network.has_squeezing
    assert cfg.network.coupling("a", "b").phase == pytest.approx(
        -(0.3 + spec.pump_lines["ab"].phase)
    )
