r"""The directional operating point, solved with the fitted device model.

Calibration ends with a :class:`DeviceModel` — what the fits found: each
mode's (unpumped) frequency and linewidths, each pump tone's coupling per volt
:math:`\eta_t`, line phase :math:`\theta_t` and Stark coefficients
:math:`\chi_{m,t}` — and asks for the tone settings that make the device
directional. The coupling of tone :math:`t` at amplitude :math:`A_t` and phase
:math:`\varphi_t` is

.. math:: c_t = \eta_t A_t\, e^{i(\varphi_t + \theta_t)}

(conversion; a gain tone enters the squeezing term with the conjugate phase),
and every mode is Stark-shifted by :math:`\sum_t \chi_{m,t} A_t^2`. With
``retune_pumps`` (the default) each pump frequency follows the shifted mode
difference (or sum), so the modes stay resonant in their frames.

:func:`solve_operating_point` minimises, over amplitudes (within their
limits) and phases, the reverse transmissions (weighted heavily) together
with the forward insertion loss and the reflections, evaluated with
:mod:`labnr.model` — not an ideal closed form — so detunings, unequal
linewidths, internal loss and Stark shifts are all accounted for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from labnr.model import Mode, Network, UnstableNetworkError
from labnr.model.frames import PumpLink, assign_frames


@dataclass(frozen=True)
class ModeModel:
    """A fitted mode: unpumped frequency (Hz) and linewidths (FWHM, Hz)."""

    frequency: float
    kappa_ext: float
    kappa_int: float


@dataclass(frozen=True)
class ToneModel:
    """A fitted pump tone: the pair it couples, how, and its calibration."""

    modes: tuple[str, str]
    kind: str  # "conversion" | "gain"
    eta: float  # Hz of coupling per V of amplitude
    theta: float  # rad, line phase
    max_amplitude: float  # V, hard limit
    stark: Mapping[str, float] = field(default_factory=dict)  # Hz / V^2 per mode


@dataclass(frozen=True)
class Settings:
    """Tone settings: amplitude (V), phase (rad) and frequency (Hz) per tone."""

    amplitude: Mapping[str, float]
    phase: Mapping[str, float]
    frequency: Mapping[str, float]


@dataclass(frozen=True)
class DeviceModel:
    """What calibration knows about the device, enough to predict its S-matrix."""

    modes: Mapping[str, ModeModel]
    tones: Mapping[str, ToneModel]
    ports: Sequence[str]  # modes with a VNA port, in port order
    #: shared amplitude limits: sum of the tones' amplitudes <= volts (tones on one AWG channel)
    budgets: Sequence[tuple[tuple[str, ...], float]] = ()

    def within_budgets(self, amplitude: Mapping[str, float]) -> dict[str, float]:
        """``amplitude`` with every over-budget group scaled down to 99.9 % of its budget."""
        out = dict(amplitude)
        for names, limit in self.budgets:
            total = sum(abs(out.get(n, 0.0)) for n in names)
            if total > limit * 0.999:
                for n in names:
                    if n in out:
                        out[n] *= limit * 0.999 / total
        return out

    def shifted_frequencies(self, amplitude: Mapping[str, float]) -> dict[str, float]:
        """Mode frequencies with the pumps' Stark shifts, Hz."""
        out = {m: mm.frequency for m, mm in self.modes.items()}
        for t, tone in self.tones.items():
            a2 = float(amplitude.get(t, 0.0)) ** 2
            for m, chi in tone.stark.items():
                out[m] += chi * a2
        return out

    def resonant_frequencies(
        self, amplitude: Mapping[str, float], detuning: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """Pump frequency of each tone, Hz, from the Stark-shifted modes.

        Every mode sits at ``detuning[m]`` (Hz, default 0) from its frame: port
        modes are kept on resonance by the caller (their band centres), modes
        without a port (e.g. mechanical ones) may be deliberately detuned.
        Frequencies built this way always close every pump loop.
        """
        f = self.shifted_frequencies(amplitude)
        frame = {m: f[m] - float((detuning or {}).get(m, 0.0)) for m in f}
        out = {}
        for t, tone in self.tones.items():
            a, b = tone.modes
            out[t] = abs(frame[b] - frame[a]) if tone.kind == "conversion" else frame[a] + frame[b]
        return out

    def pump_links(self, settings: Settings) -> tuple[list[PumpLink], dict[str, float]]:
        """One :class:`PumpLink` per tone (conversion: lower mode first), in tone order,
        and the Stark-shifted mode frequencies they were oriented with."""
        f = self.shifted_frequencies(settings.amplitude)
        links = []
        for t, tone in self.tones.items():
            a, b = tone.modes
            if tone.kind == "conversion" and f[a] > f[b]:
                a, b = b, a
            links.append(PumpLink(a, b, tone.kind, float(settings.frequency[t])))
        return links, f

    def network(self, settings: Settings) -> tuple[Network, dict[str, float]]:
        """The model network at these settings and the frame of every mode (Hz)."""
        links, f = self.pump_links(settings)
        couplings = []
        for (t, tone), link in zip(self.tones.items(), links, strict=True):
            amp = float(settings.amplitude.get(t, 0.0))
            phase = float(settings.phase.get(t, 0.0)) + tone.theta
            couplings.append((link.a, link.b, tone.kind, tone.eta * amp, phase))
        frames, _ = assign_frames(f, links, roots=list(self.ports))
        net = Network(
            [
                Mode(m, mm.kappa_ext if m in self.ports else 0.0,
                     mm.kappa_int + (0.0 if m in self.ports else mm.kappa_ext),
                     f[m] - frames[m])
                for m, mm in self.modes.items()
            ]
        )  # fmt: skip
        for a, b, kind, g, phase in couplings:
            if kind == "conversion":
                net.beamsplitter(a, b, g, phase)
            else:
                net.squeezing(a, b, g, -phase)
        return net, frames

    def smatrix(self, settings: Settings, offset: float = 0.0) -> np.ndarray:
        """Predicted S (ports x ports, [out, in]) at ``offset`` from the band centres."""
        net, _ = self.network(settings)
        S = net.scattering(offset, nambu=net.has_squeezing)
        return np.asarray(S)[: len(self.ports), : len(self.ports)]


@dataclass(frozen=True)
class OperatingPoint:
    """The solved settings and what the model predicts there."""

    settings: Settings
    band_centres: dict[str, float]  # Hz, where each port's band sits at these settings
    smatrix: np.ndarray  # predicted S at band centre, [out, in] in port order
    isolation_db: float  # worst over the target's paths
    insertion_loss_db: float  # worst forward path
    reflection_db: float  # worst port
    success: bool
    message: str


def _port_index(model: DeviceModel, path: tuple[str, str]) -> tuple[int, int]:
    ports = list(model.ports)
    return ports.index(path[0]), ports.index(path[1])


def figures(
    S: np.ndarray,
    model: DeviceModel,
    forward: Sequence[tuple[str, str]],
    reverse: Sequence[tuple[str, str]],
) -> tuple[float, float, float]:
    """(worst isolation, worst insertion loss, worst reflection) in dB from S at centre."""
    with np.errstate(divide="ignore"):
        fwd = [abs(S[_port_index(model, p)]) for p in forward]
        rev = [abs(S[_port_index(model, p)]) for p in reverse]
        iso = min(20 * np.log10(f / max(r, 1e-15)) for f, r in zip(fwd, rev, strict=True))
        loss = max(-20 * np.log10(max(f, 1e-15)) for f in fwd)
        used = {m for p in [*forward, *reverse] for m in p}
        refl = max(20 * np.log10(max(abs(S[k, k]), 1e-15))
                   for k, m in enumerate(model.ports) if m in used)  # fmt: skip
    return float(iso), float(loss), float(refl)


def solve_operating_point(
    model: DeviceModel,
    forward: Sequence[tuple[str, str]],
    reverse: Sequence[tuple[str, str]],
    start: Settings | None = None,
    *,
    retune_pumps: bool = True,
    reverse_weight: float = 30.0,
    reflection_weight: float = 0.3,
    restarts: int = 16,
    seed: int = 0,
) -> OperatingPoint:
    """Tone amplitudes and phases that make the device directional.

    Parameters
    ----------
    model : DeviceModel
        The fitted device.
    forward, reverse : sequence of (out_mode, in_mode)
        The paths to keep and to cancel (``TargetConfig.paths()``).
    start : Settings, optional
        First guess (e.g. the present settings); also the source of the pump
        frequencies when ``retune_pumps`` is False.
    retune_pumps : bool
        Put every pump on its Stark-shifted resonance.
    reverse_weight, reflection_weight : float
        Weights of the reverse transmissions and the reflections against the
        forward insertion loss in the least-squares objective.
    restarts : int
        Further random starting phases tried; the best solution wins.
    seed : int
        Seed of the restarts.

    Returns
    -------
    OperatingPoint
        Settings with the model's predicted figures. ``success`` is False if
        the predicted isolation stays below 40 dB or the network is unstable.
    """
    tones = list(model.tones)
    free = [m for m in model.modes if m not in model.ports]  # modes that may sit detuned
    scale = np.array([max(model.modes[m].kappa_ext + model.modes[m].kappa_int, 1e-9)
                      for m in free])  # fmt: skip
    limits = np.array([model.tones[t].max_amplitude for t in tones])
    fixed_freq = dict(start.frequency) if start is not None else {}
    nt = len(tones)

    def settings_of(x: np.ndarray) -> Settings:
        amp = dict(zip(tones, np.clip(x[:nt], 0, limits), strict=True))
        phase = dict(zip(tones, x[nt : 2 * nt], strict=True))
        detuning = dict(zip(free, x[2 * nt :] * scale, strict=True))
        if retune_pumps or not fixed_freq:
            return Settings(amp, phase, model.resonant_frequencies(amp, detuning))
        return Settings(amp, phase, fixed_freq)

    n_res = 2 * len(reverse) + len(forward) + len(model.ports) + len(model.budgets)
    budget_idx = [[tones.index(n) for n in names if n in tones] for names, _ in model.budgets]
    budget_lim = np.array([lim for _, lim in model.budgets])

    def over_budget(x: np.ndarray) -> np.ndarray:
        """Penalty of tones sharing an output beyond its full scale (0 when within)."""
        if not model.budgets:
            return np.zeros(0)
        total = np.array([np.sum(x[idx]) for idx in budget_idx])
        return 100.0 * np.maximum(total - 0.99 * budget_lim, 0.0) / budget_lim

    def residual(x: np.ndarray) -> np.ndarray:
        try:
            S = model.smatrix(settings_of(x))
        except UnstableNetworkError:
            return np.full(n_res, 10.0)
        rev = np.array([S[_port_index(model, p)] for p in reverse])
        fwd = np.array([abs(S[_port_index(model, p)]) for p in forward])
        refl = np.abs(np.diag(S))
        return np.concatenate(
            [reverse_weight * rev.real, reverse_weight * rev.imag, 1.0 - fwd,
             reflection_weight * refl, over_budget(x)]
        )  # fmt: skip

    rng = np.random.default_rng(seed)
    ideal = _ideal_guess(model, tones, limits)
    amps = model.within_budgets(dict(zip(tones, ideal[:nt], strict=True)))
    ideal[:nt] = [amps[t] for t in tones]
    guesses = [np.r_[ideal, np.ones(len(free))]]
    if start is not None:
        guesses.insert(0, np.r_[[start.amplitude.get(t, 0.0) for t in tones],
                                [start.phase.get(t, 0.0) for t in tones],
                                np.ones(len(free))])  # fmt: skip
    for k in range(restarts):
        g = guesses[-1].copy()
        g[nt : 2 * nt] = rng.uniform(-np.pi, np.pi, nt)
        g[2 * nt :] = rng.uniform(-3, 3, len(free)) if k % 2 else np.ones(len(free))
        guesses.append(g)
    best = None
    lower = np.r_[np.zeros(nt), np.full(nt, -np.inf), np.full(len(free), -20.0)]
    upper = np.r_[limits, np.full(nt, np.inf), np.full(len(free), 20.0)]
    for g in guesses:
        g = np.clip(g, lower, upper)
        fit = least_squares(
            residual, g, bounds=(lower, upper), xtol=1e-10, ftol=1e-10, max_nfev=25 * len(g)
        )
        if best is None or fit.cost < best.cost:
            best = fit
        rev_left = np.abs(fit.fun[: 2 * len(reverse)]).max(initial=0.0) / reverse_weight
        if rev_left < 1e-4:
            break  # reverse paths below -80 dB: the remaining terms only polish the loss
    assert best is not None
    settings = settings_of(best.x)
    settings = Settings(model.within_budgets(settings.amplitude),
                        {t: float(np.angle(np.exp(1j * p))) for t, p in settings.phase.items()},  # noqa: E501
                        settings.frequency)  # fmt: skip
    try:
        S = model.smatrix(settings)
        stable = True
    except UnstableNetworkError:
        S, stable = np.full((len(model.ports),) * 2, np.nan + 0j), False
    iso, loss, refl = figures(S, model, forward, reverse) if stable else (np.nan,) * 3
    _, frames = model.network(settings)
    ok = stable and iso >= 40.0
    msg = "ok" if ok else ("unstable at the solution" if not stable
                           else f"predicted isolation only {iso:.1f} dB")  # fmt: skip
    return OperatingPoint(
        settings, {m: frames[m] for m in model.ports}, S, iso, loss, refl, ok, msg
    )


def _ideal_guess(model: DeviceModel, tones: list[str], limits: np.ndarray) -> np.ndarray:
    """|g| = sqrt(kappa_a kappa_b)/2 on every link, zero phases (then optimised)."""
    amps = []
    for t in tones:
        tone = model.tones[t]
        ka = model.modes[tone.modes[0]].kappa_ext + model.modes[tone.modes[0]].kappa_int
        kb = model.modes[tone.modes[1]].kappa_ext + model.modes[tone.modes[1]].kappa_int
        amps.append(np.sqrt(ka * kb) / 2 / max(tone.eta, 1e-30))
    return np.r_[np.minimum(amps, limits), np.zeros(len(tones))]


def realise(
    model: DeviceModel, settings: Settings, realisable: Callable[[str, float], float]
) -> Settings:
    """``settings`` with the pump frequencies the instruments can really play, loops closed.

    Every tone on a spanning tree of the pump links is moved to its realisable
    frequency (e.g. the AWG's grid); every tone that closes a loop is then set
    to the frequency the tree's frames require, so the loop's phase stays
    static. Raises ValueError if that frequency is not realisable (the grid
    cannot close the loop).
    """
    freq = {t: float(realisable(t, f)) for t, f in settings.frequency.items()}
    tones = list(model.tones)
    links, f_modes = model.pump_links(Settings(settings.amplitude, settings.phase, freq))
    _, mismatch = assign_frames(f_modes, links, roots=list(model.ports))
    for t, miss in zip(tones, mismatch, strict=True):
        if miss == 0.0:
            continue
        # mismatch = (F_a + f) - F_b (conversion) or f - F_a - F_b (gain): remove it
        need = freq[t] - miss
        got = float(realisable(t, need))
        if abs(got - need) > 1e-3:  # Hz
            raise ValueError(
                f"pump tone {t!r}: closing its loop needs {need:.6f} Hz, but the pump can "
                f"only play {got:.6f} Hz there; use a finer frequency grid (pumps."
                "frequency_resolution) or give the tone its own LO with track_lo"
            )
        freq[t] = got
    return Settings(settings.amplitude, settings.phase, freq)
