r"""Vectorised linear response of a driven, damped mode network.

The Heisenberg–Langevin equations of any network in labnr are linear,

.. math::

    \dot{\mathbf a} = A\,\mathbf a + B\,\mathbf a_{\rm in}, \qquad
    \mathbf a_{\rm out} = \mathbf a_{\rm in} - B^{T}\mathbf a ,

so that at an offset :math:`\omega` from the frame frequency (with
:math:`\mathbf a(t) = \int \mathbf a[\omega]\, e^{-i\omega t}`)

.. math::

    S(\omega) = I - B^{T} \left(-i\omega\,I - A\right)^{-1} B .

All rates and offsets are ordinary frequencies in Hz; the equations are
homogeneous, so the :math:`2\pi` cancels.

The dynamical matrix :math:`A` does not depend on :math:`\omega`. With
:math:`A = V \Lambda V^{-1}` the whole sweep is one matrix product
(pole–residue form)

.. math::

    S(\omega) = I - \sum_k \frac{(B^T V)_{:,k}\,(V^{-1}B)_{k,:}}{-i\omega - \lambda_k} .

Near an exceptional point :math:`V` is ill-conditioned and the pole–residue
form loses accuracy; there we fall back to one batched direct solve.
"""

from __future__ import annotations

import numpy as np

#: Largest condition number of the eigenvector matrix for which the
#: pole–residue form is trusted (relative error ~ cond * eps ~ 1e-10).
MAX_EIGVEC_CONDITION = 1e6


def _residues(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poles, residues and a per-item flag telling where pole–residue is safe."""
    lam, V = np.linalg.eig(A)
    cond = np.linalg.cond(V)
    ok = np.isfinite(cond) & (cond < MAX_EIGVEC_CONDITION)
    Vinv = np.linalg.inv(np.where(ok[..., None, None], V, np.eye(A.shape[-1])))
    left = np.swapaxes(B, -1, -2) @ V  # (..., P, N)
    right = Vinv @ B  # (..., N, P)
    # residue R[k] = left[:, k] (outer) right[k, :]  -> (..., N, P, P)
    res = np.einsum("...pk,...kq->...kpq", left, right)
    return lam, res, ok


def response(A: np.ndarray, B: np.ndarray, offsets: np.ndarray, method: str = "auto") -> np.ndarray:
    """Scattering matrices of linear networks over a sweep of offsets.

    Parameters
    ----------
    A : numpy.ndarray
        Dynamical matrices, shape (..., N, N) (leading axes: a batch of
        parameter sets).
    B : numpy.ndarray
        Input couplings :math:`\\sqrt{\\kappa}`, shape (..., N, P), broadcastable
        against ``A``'s batch axes.
    offsets : numpy.ndarray
        Offsets from the frame frequency, Hz, shape (F,).
    method : {"auto", "poles", "solve"}
        ``"poles"``: pole–residue form; ``"solve"``: batched direct solve;
        ``"auto"``: pole–residue where the eigenbasis is well conditioned,
        direct solve elsewhere.

    Returns
    -------
    numpy.ndarray
        Complex array of shape (..., F, P, P), indexed [..., f, out, in].
    """
    A = np.asarray(A, dtype=complex)
    B = np.asarray(B, dtype=complex)
    w = np.asarray(offsets, dtype=float).reshape(-1)
    batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    A = np.broadcast_to(A, batch + A.shape[-2:])
    B = np.broadcast_to(B, batch + B.shape[-2:])
    n_ports = B.shape[-1]
    if method not in ("auto", "poles", "solve"):
        raise ValueError(f"method={method!r} is not allowed; use 'auto', 'poles' or 'solve'")
    if method == "solve":
        return _solve(A, B, w)
    lam, res, ok = _residues(A, B)
    if method == "poles":
        ok = np.ones_like(ok)
    denom = 1.0 / ((-1j * w)[:, None] - lam[..., None, :])  # (..., F, N)
    flat = res.reshape(res.shape[:-2] + (n_ports * n_ports,))  # (..., N, P*P)
    S = denom @ flat
    np.negative(S, out=S)
    S[..., :: n_ports + 1] += 1.0  # + identity, in place (mixed-dtype ops are slow)
    S = S.reshape(batch + (w.size, n_ports, n_ports))
    if not np.all(ok):
        bad = ~ok
        S[bad] = _solve(A[bad], B[bad], w)
    return S


def _solve(A: np.ndarray, B: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Batched direct solve of (-i w - A) X = B for every offset."""
    n = A.shape[-1]
    M = -1j * w[:, None, None] * np.eye(n) - A[..., None, :, :]  # (..., F, N, N)
    X = np.linalg.solve(M, np.broadcast_to(B[..., None, :, :], M.shape[:-1] + B.shape[-1:]))
    S = -np.swapaxes(B, -1, -2)[..., None, :, :] @ X
    S += np.eye(B.shape[-1])
    return S
