"""Benchmark: global S-matrix fit of a three-mode circulator (9 traces x 401 points x 3 settings).

Run: ``python benchmarks/bench_fit_smatrix.py [--n 5] [--points 401] [--no-baseline]``.

The data are seeded synthetic measurements (tests/fit/smatrix_synthetic.py:
``labnr.model`` networks, lines with 40-70 ns delays, complex noise at 40 dB
SNR) of three pump settings; the fit starts from what a user would type
(detunings off by a quarter linewidth, couplings per volt off by 30 %, line
phases unknown) with sigma estimated from the data. Timed, in the same run:

- ``labnr``: :func:`labnr.fit.fit_smatrix` end to end (initial line estimate,
  noise estimate, loop-phase scan, MINPACK Levenberg-Marquardt with the
  analytic Jacobian, checks, result with traces); median of ``n`` seeds.
  This is the figure with the target.

and, from the very parameters the labnr fit starts its optimiser from (after
its initial estimates), the optimisation alone (run once each):

- ``optimiser only``: labnr's batched model and analytic Jacobian;
- ``batched + FD``: the same batched model, lmfit's default finite-difference
  Jacobian (one model evaluation per parameter per iteration);
- ``naive``: lmfit defaults (finite differences) on a model that solves
  :math:`(-i\\omega - A_k) X = B` frequency by frequency in a Python loop — how
  the model is usually first written.

Target (issue #6): <= 1 s end to end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lmfit
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fit"))
from smatrix_synthetic import make_truth, simulate, user_guesses  # noqa: E402

from labnr.fit import fit_smatrix  # noqa: E402
from labnr.fit.smatrix import _Objective  # noqa: E402

TARGET = 1.0  # s


@dataclass
class Timing:
    """One variant's time and the couplings per volt it found."""

    variant: str
    seconds: float
    nfev: int
    etas: dict[str, float]


def _problem(seed: int, points: int):
    truth = make_truth(3, snr_db=40)
    data = simulate(truth, np.random.default_rng(seed), points=points)
    modes, links = user_guesses(truth, pump_mode=True)
    return truth, data, modes, links


def _etas(values) -> dict[str, float]:
    return {t: float(values[f"eta_{t}"]) for t in ("ab", "bc", "ca")}


def time_labnr(n: int, points: int) -> tuple[Timing, object]:
    """Median of ``n`` seeded fits; returns the last result too."""
    times, result = [], None
    for seed in range(n):
        _, data, modes, links = _problem(100 + seed, points)
        start = time.perf_counter()
        result = fit_smatrix(data, modes, links)
        times.append(time.perf_counter() - start)
    assert result is not None
    return Timing(
        "labnr", statistics.median(times), result.info["nfev"], _etas(result.values)
    ), result


def _naive_evaluate(model, values) -> np.ndarray:
    """The model frequency by frequency: one solve per offset and setting."""
    A, B, _ = model.matrices(values)
    n, P = A.shape[-1], B.shape[-1]
    S = np.empty((A.shape[0], model.offsets.size, P, P), dtype=complex)
    for k in range(A.shape[0]):
        for f, w in enumerate(model.offsets):
            X = np.linalg.solve(-1j * w * np.eye(n) - A[k], B[k])
            S[k, f] = np.eye(P) - B[k].T @ X
    return model.lines(values)[None] * (np.conj(S) if model.conjugate else S)  # VNA phasors


def time_optimisers(result) -> list[Timing]:
    """The optimisation alone, from the labnr fit's starting point (one run each)."""
    model, data = result.model, result.data
    start_params = model.params.copy()  # the optimiser's starting values (after init)
    valid = data.valid
    d = data.S[valid]
    inv = 1.0 / result.sigma[valid]
    objective = _Objective(model, data.S, valid, result.sigma)
    out = []
    for name, evaluate, jac in (
        ("optimiser only", None, objective.jacobian),
        ("batched + FD", lambda v: model.evaluate(v), None),
        ("naive", lambda v: _naive_evaluate(model, v), None),
    ):

        def residual(params, evaluate=evaluate):
            if evaluate is None:
                return objective.residual(params)
            r = (evaluate(params.valuesdict())[valid] - d) * inv
            return np.concatenate([r.real, r.imag])

        params = start_params.copy()
        kws = {} if jac is None else {"Dfun": jac, "col_deriv": True}
        begin = time.perf_counter()
        raw = lmfit.minimize(residual, params, method="leastsq", **kws)
        out.append(Timing(name, time.perf_counter() - begin, raw.nfev, _etas(raw.params)))
    return out


def run(n: int = 5, points: int = 401, baseline: bool = True) -> list[Timing]:
    """All variants; the labnr figure is the median of ``n`` seeds."""
    fast, result = time_labnr(n, points)
    timings = [fast]
    if baseline:
        # start the baselines where the labnr optimiser started: rebuild that state
        _, data, modes, links = _problem(100 + n - 1, points)
        first = fit_smatrix(data, modes, links, max_nfev=1, raise_on_failure=False)
        timings += time_optimisers(first)
    return timings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5, help="seeded fits for the median (>= 5)")
    p.add_argument("--points", type=int, default=401, help="offsets per trace")
    p.add_argument("--no-baseline", action="store_true", help="skip the slow baselines")
    args = p.parse_args(argv)
    timings = run(args.n, args.points, baseline=not args.no_baseline)
    truth = make_truth(3)
    print(f"global S-matrix fit: 3 modes, 9 traces x {args.points} points x 3 settings")
    print(f"{'variant':>14} {'time (s)':>10} {'nfev':>6}  eta errors vs truth (ab, bc, ca)")
    for t in timings:
        errs = ", ".join(f"{t.etas[k] / truth.eta[k] - 1:+.1e}" for k in ("ab", "bc", "ca"))
        print(f"{t.variant:>14} {t.seconds:10.3f} {t.nfev:6d}  {errs}")
    fast = timings[0].seconds
    print(f"labnr median of {args.n}: {fast:.3f} s (target <= {TARGET:.1f} s)")
    if len(timings) > 1:
        opt = timings[1].seconds
        for t in timings[2:]:
            print(f"  optimiser speed-up over {t.variant}: {t.seconds / opt:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
