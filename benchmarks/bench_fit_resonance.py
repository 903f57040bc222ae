"""Benchmark: single-resonance fit speed and the honesty of its error bars (issue #6, part 1).

Run: ``python benchmarks/bench_fit_resonance.py [--points 401] [--repeats 500]``.
Synthetic reflection and notch traces (κ = 1 MHz, κ_int/κ = 0.3, φ = 0.15,
60 ns delay) at 40 dB SNR (per-quadrature σ = 0.01 |a|), ``points`` over ±3κ:

- median wall time of ``fit_resonance`` (guess included) and of ``guess()`` alone
  (target: a 401-point fit well under 50 ms);
- over ``repeats`` noise realisations: how often the 1σ interval contains the
  truth (target 60–76 %, ideal 68.3 %), the mean and std of the pulls
  (value − truth)/σ, and the mean reduced χ² (ideal 1).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from labnr.fit import NotchModel, ReflectionModel, fit_resonance, notch, reflection

KINDS = {"reflection": (reflection, ReflectionModel), "notch": (notch, NotchModel)}
TRUTH = {"f0": 5.00013e9, "kappa_ext": 0.7e6, "kappa_int": 0.3e6, "phi": 0.15, "a": 0.03,
         "alpha": 2.0, "tau": 60e-9}  # fmt: skip
SIGMA = 0.01 * TRUTH["a"]


def _noisy(rng: np.random.Generator, s: np.ndarray) -> np.ndarray:
    return s + SIGMA * (rng.normal(size=s.size) + 1j * rng.normal(size=s.size))


def timing(kind: str, points: int, repeats: int = 30) -> tuple[float, float]:
    """Median seconds of a full fit and of the guess alone."""
    func, model_cls = KINDS[kind]
    f = 5e9 + np.linspace(-3e6, 3e6, points)
    data = _noisy(np.random.default_rng(0), func(f, **TRUTH))
    model = model_cls()
    fits, guesses = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit_resonance(f, data, kind=kind, sigma=SIGMA)
        fits.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.guess(data, frequency=f)
        guesses.append(time.perf_counter() - t0)
    return statistics.median(fits), statistics.median(guesses)


def coverage(kind: str, points: int, repeats: int, seed: int = 7) -> dict[str, tuple]:
    """Per parameter: (coverage, pull mean, pull std); plus the mean reduced χ²."""
    func, _ = KINDS[kind]
    f = 5e9 + np.linspace(-3e6, 3e6, points)
    clean = func(f, **TRUTH)
    rng = np.random.default_rng(seed)
    pulls: dict[str, list[float]] = {name: [] for name in TRUTH}
    redchi = []
    for _ in range(repeats):
        res = fit_resonance(f, _noisy(rng, clean), kind=kind, sigma=SIGMA)
        for name in TRUTH:
            pulls[name].append((res.values[name] - TRUTH[name]) / res.errors[name])
        redchi.append(res.redchi)
    out: dict[str, tuple] = {
        name: (float(np.mean(np.abs(p) <= 1)), float(np.mean(p)), float(np.std(p)))
        for name, p in pulls.items()
    }
    out["redchi"] = (float(np.mean(redchi)),)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=401)
    parser.add_argument("--repeats", type=int, default=500)
    args = parser.parse_args()
    for kind in KINDS:
        t_fit, t_guess = timing(kind, args.points)
        print(f"{kind}: {args.points} points, fit {t_fit * 1e3:.1f} ms "
              f"(guess {t_guess * 1e3:.1f} ms), median")  # fmt: skip
        cov = coverage(kind, args.points, args.repeats)
        for name in TRUTH:
            c, m, s = cov[name]
            print(f"  {name:10s} coverage {c * 100:5.1f} %  pull mean {m:+.3f}  std {s:.3f}")
        print(f"  mean reduced chi-square {cov['redchi'][0]:.3f} over {args.repeats} repetitions")


if __name__ == "__main__":
    main()
