r"""Evaluation engine of the global S-matrix model: prediction, residuals, analytic Jacobian.

The measured element :math:`(o, i)` at pump setting :math:`k` and offset
:math:`\delta` from the band centres is modelled as

.. math::

    M_{k,oi}(\delta) = G^{\rm out}_o G^{\rm in}_i\,
        e^{-2\pi i\,[\delta\,\tau^{\rm in}_i + (\delta + e_{oi})\,\tau^{\rm out}_o]}\,
        \overline{S_{k,oi}(\delta + u_i)},
    \qquad
    S_k(\omega) = 1 - B_k^{T}\,(-i\omega - A_k)^{-1} B_k ,

with complex port gains :math:`G = |G| e^{i\alpha}` (``gain_*``, ``phase_*``),
port delays :math:`\tau` (``delay_*``), the dynamical matrices :math:`A_k`
(:meth:`labnr.model.Network.dynamical_matrix`) and :math:`B_k =
{\rm diag}\sqrt{\kappa_{\rm ext}}`. :math:`e_{oi} = f_i + c_{oi} - f_o` is the
receiver's distance from the output band centre (0 when the pumps sit at the
band-centre differences) and :math:`u_i` the offset of input mode :math:`i`'s
rotating frame from its band centre (likewise 0 then).

The bar is the measurement convention: a VNA (and the virtual lab) reports
phasors in the engineering convention :math:`e^{+j\omega t}`, in which a delay
is :math:`e^{-j2\pi f\tau}` and the device's response is the complex conjugate
of :mod:`labnr.model`'s :math:`e^{-i\omega t}` one (``convention="engineering"``,
the default). ``convention="physics"`` drops the bar, for data already in the
model's convention. Either way the fitted parameters (detunings, couplings,
link and loop phases) are those of :class:`labnr.model.Network`.

Identifiability of the lines: only the products :math:`G^{\rm out}_o G^{\rm in}_i`
and sums :math:`\tau^{\rm out}_o + \tau^{\rm in}_i` enter, so the reference port's
input gain is fixed to 1, its input phase to 0 and its input delay to 0: the
output parameters of port ``o`` then describe the whole path ``ref -> o``, and the
other input parameters are relative to the reference input. Ports that no link
connects to the reference (a mode left uncoupled, e.g. during an amplitude sweep
of another pair) only share products within their own group, so each such group
gets its own reference port (its first port), fixed the same way.

The Jacobian is analytic: with :math:`R = (-i\omega - A)^{-1}`,
:math:`X = R B` and :math:`Y = B^T R`, a change :math:`\partial A` gives
:math:`\partial S = -Y\,\partial A\,X` (plus the :math:`\partial B` terms of
:math:`\kappa_{\rm ext}`), evaluated for all settings and offsets at once from
the eigendecomposition of :math:`A_k` (pole–residue form).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lmfit
import numpy as np

from labnr.fit.smatrix_params import Parametrisation
from labnr.model.linear import MAX_EIGVEC_CONDITION, response

TWO_PI = 2 * np.pi


class SMatrixModel:
    """The global model on one data layout (offsets, ports, frame shifts).

    Parameters
    ----------
    par : Parametrisation
        Physics parameters and their map to per-setting quantities.
    offsets : numpy.ndarray
        Offsets :math:`\\delta` from the band centres, Hz, shape (F,).
    shift : numpy.ndarray
        :math:`u_i` per data port, Hz, shape (P,).
    excess : numpy.ndarray
        :math:`e_{oi}`, Hz, shape (P, P).
    reference : str
        The port whose input gain, phase and delay are fixed (1, 0, 0).
    convention : {"engineering", "physics"}
        Whether the data hold the conjugate of the model's S (a VNA's
        :math:`e^{+j\\omega t}` phasors, default) or the model's S itself.
    """

    def __init__(
        self,
        par: Parametrisation,
        offsets: np.ndarray,
        shift: np.ndarray,
        excess: np.ndarray,
        reference: str,
        convention: str = "engineering",
    ) -> None:
        self.par = par
        self.ports = list(par.ports)
        self.offsets = np.asarray(offsets, dtype=float)
        self.names = [m.name for m in par.modes]
        self.port_mode = np.array([self.names.index(p) for p in self.ports])
        self.excess = np.asarray(excess, dtype=float)
        shift = np.asarray(shift, dtype=float) - float(np.asarray(shift)[0])
        self.blocks, self.block_of = np.unique(np.round(shift, 6), return_inverse=True)
        self.w = (self.offsets[None, :] + self.blocks[:, None]).reshape(-1)
        if convention not in ("engineering", "physics"):
            raise ValueError(f"convention={convention!r}; allowed 'engineering' or 'physics'")
        self.conjugate = convention == "engineering"
        self.reference = reference
        self.references = self._group_references(reference)
        self.params = par.params
        self._add_line_params()

    def _group_references(self, reference: str) -> dict[str, str]:
        """``{port: reference port of its group}`` (groups: ports connected by links)."""
        root = {n: n for n in self.names}

        def find(x: str) -> str:
            while root[x] != x:
                x = root[x]
            return x

        for lk in self.par.links:
            root[find(lk.a)] = find(lk.b)
        first: dict[str, str] = {}
        for p in [reference] + self.ports:
            first.setdefault(find(p), p)
        return {p: first[find(p)] for p in self.ports}

    # ------------------------------------------------------------------ parameters
    def _add_line_params(self) -> None:
        for side in ("out", "in"):
            for p in self.ports:
                fixed = side == "in" and self.references[p] == p
                self.params.add(f"gain_{side}_{p}", value=1.0, min=0.0, vary=not fixed)
                self.params.add(
                    f"phase_{side}_{p}", value=0.0, min=-4 * np.pi, max=4 * np.pi, vary=not fixed
                )
                self.params.add(f"delay_{side}_{p}", value=0.0, min=-2e-6, max=2e-6, vary=not fixed)

    def set_lines(
        self,
        params: lmfit.Parameters,
        gains_out: np.ndarray,
        gains_in: np.ndarray,
        delays_out: np.ndarray,
        delays_in: np.ndarray,
    ) -> None:
        """Write complex port gains and delays into ``params`` (reference inputs normalised)."""
        gains_in, gains_out = np.array(gains_in, complex), np.array(gains_out, complex)
        delays_in, delays_out = np.array(delays_in, float), np.array(delays_out, float)
        for ref in set(self.references.values()):
            group = [j for j, p in enumerate(self.ports) if self.references[p] == ref]
            r = self.ports.index(ref)
            scale, d = gains_in[r], delays_in[r]
            if scale == 0:
                scale = 1.0
            gains_in[group], gains_out[group] = gains_in[group] / scale, gains_out[group] * scale
            delays_in[group], delays_out[group] = delays_in[group] - d, delays_out[group] + d
        for side, g, t in (("out", gains_out, delays_out), ("in", gains_in, delays_in)):
            for j, p in enumerate(self.ports):
                params[f"gain_{side}_{p}"].set(value=float(abs(g[j])))
                params[f"phase_{side}_{p}"].set(value=float(np.angle(g[j])))
                params[f"delay_{side}_{p}"].set(value=float(np.clip(t[j], -1.9e-6, 1.9e-6)))

    # ------------------------------------------------------------------ physics
    def matrices(self, values: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, dict]:
        """Dynamical matrices (K, N, N), input matrices (K, N, P) and the quantities."""
        q = self.par.quantities(values)
        K, N, P = self.par.settings, len(self.names), len(self.ports)
        kappa = q["kext"] + q["kint"]
        A = np.zeros((K, N, N), dtype=complex)
        idx = np.arange(N)
        A[:, idx, idx] = -1j * q["det"] - kappa / 2
        c = q["g"] * np.exp(1j * q["phi"])
        for j, lk in enumerate(self.par.links):
            a, b = self.names.index(lk.a), self.names.index(lk.b)
            A[:, a, b] += -1j * c[:, j]
            A[:, b, a] += -1j * np.conj(c[:, j])
        B = np.zeros((K, N, P))
        B[:, self.port_mode, np.arange(P)] = np.sqrt(np.maximum(q["kext"][:, self.port_mode], 0))
        return A, B, q

    def _select(self, S: np.ndarray) -> np.ndarray:
        """(..., nb*F, P, P) on the block grid -> (..., F, P, P) with each input's block."""
        if len(self.blocks) == 1:
            return S
        F = self.offsets.size
        S = S.reshape(S.shape[:-3] + (len(self.blocks), F) + S.shape[-2:])
        cols = [S[..., self.block_of[i], :, :, i] for i in range(len(self.ports))]
        return np.stack(cols, axis=-1)

    def device(self, values: Mapping[str, float]) -> np.ndarray:
        """Device S-matrix per setting as measured (conjugated if engineering), (K, F, P, P)."""
        A, B, _ = self.matrices(values)
        S = self._select(response(A, B, self.w))
        return np.conj(S, out=S) if self.conjugate else S

    def lines(self, values: Mapping[str, float]) -> np.ndarray:
        """Line factor of every element, (F, P, P)."""
        go, gi = self._port_gains(values)
        to = np.array([values[f"delay_out_{p}"] for p in self.ports])
        ti = np.array([values[f"delay_in_{p}"] for p in self.ports])
        d = self.offsets[:, None, None]
        phase = d * ti[None, None, :] + (d + self.excess[None]) * to[None, :, None]
        return (go[:, None] * gi[None, :])[None] * np.exp(-1j * TWO_PI * phase)

    def _port_gains(self, values: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        out = [values[f"gain_out_{p}"] * np.exp(1j * values[f"phase_out_{p}"]) for p in self.ports]
        inn = [values[f"gain_in_{p}"] * np.exp(1j * values[f"phase_in_{p}"]) for p in self.ports]
        return np.array(out), np.array(inn)

    def evaluate(self, values: Mapping[str, float]) -> np.ndarray:
        """Predicted measured S, (K, F, P, P)."""
        return self.lines(values)[None] * self.device(values)

    # ------------------------------------------------------------------ Jacobian
    def _resolvent_factors(self, A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """X = R B (K, F', N, P) and Y = B^T R (K, F', P, N) on the block grid."""
        lam, V = np.linalg.eig(A)
        cond = np.linalg.cond(V)
        ok = np.isfinite(cond) & (cond < MAX_EIGVEC_CONDITION)
        Vinv = np.linalg.inv(np.where(ok[:, None, None], V, np.eye(A.shape[-1])))
        D = 1.0 / ((-1j * self.w)[None, :, None] - lam[:, None, :])  # (K, F', N)
        U = Vinv @ B  # (K, N, P)
        W = np.swapaxes(B, -1, -2) @ V  # (K, P, N)
        X = (V[:, None] * D[:, :, None, :]) @ U[:, None]
        Y = (W[:, None] * D[:, :, None, :]) @ Vinv[:, None]
        for k in np.flatnonzero(~ok):  # near an exceptional point: direct inverse
            n = A.shape[-1]
            R = np.linalg.inv(-1j * self.w[:, None, None] * np.eye(n) - A[k])
            X[k] = R @ B[k]
            Y[k] = B[k].T @ R
        return X, Y

    def _elementary(self, A: np.ndarray, B: np.ndarray, q: dict) -> dict:
        """dS/d(quantity) for every (kind, index) a parameter touches, (K, F', P, P) each."""
        X, Y = self._resolvent_factors(A, B)
        needed = {(t.kind, t.index) for t in self.par.terms}
        out: dict[tuple[str, int], np.ndarray] = {}

        def outer(u: int, v: int) -> np.ndarray:
            return Y[..., :, u, None] * X[..., None, v, :]

        for kind, j in needed:
            if kind in ("det", "kint", "kext"):
                base = outer(j, j)
                if kind == "det":
                    out[(kind, j)] = 1j * base
                    continue
                d = 0.5 * base
                if kind == "kext":
                    p = int(np.flatnonzero(self.port_mode == j)[0])
                    s = 0.5 / np.sqrt(np.maximum(q["kext"][:, j], 1e-30))[:, None, None]
                    d = d.copy()
                    d[..., p, :] -= s * X[..., j, :]
                    d[..., :, p] -= s * Y[..., :, j]
                out[(kind, j)] = d
            else:
                lk = self.par.links[j]
                a, b = self.names.index(lk.a), self.names.index(lk.b)
                e = np.exp(1j * q["phi"][:, j])[:, None, None, None]
                ab, ba = e * outer(a, b), np.conj(e) * outer(b, a)
                if kind == "g":
                    out[(kind, j)] = 1j * (ab + ba)
                else:
                    out[(kind, j)] = -q["g"][:, j][:, None, None, None] * (ab - ba)
        return out

    def jacobian(
        self, values: Mapping[str, float], var_names: Sequence[str], model: np.ndarray | None = None
    ) -> np.ndarray:
        """dM/dp for the varied parameters, complex (nv, K, F, P, P) (one row per parameter)."""
        A, B, q = self.matrices(values)
        L = self.lines(values)[None]
        M = self.evaluate(values) if model is None else model
        elem = self._elementary(A, B, q)
        by_param: dict[str, list] = {}
        for t in self.par.terms:
            by_param.setdefault(t.param, []).append(t)
        K, F, P = self.par.settings, self.offsets.size, len(self.ports)
        J = np.empty((len(var_names), K, F, P, P), dtype=complex)
        for c, name in enumerate(var_names):
            if name in by_param:
                col = sum(
                    t.coef[:, None, None, None] * elem[(t.kind, t.index)] for t in by_param[name]
                )
                col = self._select(col)
                np.multiply(L, np.conj(col) if self.conjugate else col, out=J[c])
            else:
                J[c] = self._line_column(name, values, M)
        return J

    def _line_column(self, name: str, values: Mapping[str, float], M: np.ndarray) -> np.ndarray:
        kind, side, port = name.split("_", 2)
        j = self.ports.index(port)
        col = np.zeros_like(M)
        sl = (Ellipsis, j, slice(None)) if side == "out" else (Ellipsis, slice(None), j)
        if kind == "gain":
            col[sl] = M[sl] / max(values[name], 1e-300)
        elif kind == "phase":
            col[sl] = 1j * M[sl]
        elif side == "out":  # receiver at delta + e_oi
            col[sl] = -1j * TWO_PI * (self.offsets[:, None] + self.excess[j][None, :]) * M[sl]
        else:
            col[sl] = -1j * TWO_PI * self.offsets[:, None] * M[sl]
        return col
