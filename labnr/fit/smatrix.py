r"""Global coupled-mode fit of measured S-matrices (all elements, several pump settings).

The model (:mod:`labnr.fit.smatrix_model`) is the coupled-mode scattering
matrix of :class:`labnr.model.Network` times per-port line gains and delays,

.. math::

    M_{k,oi}(\delta) = G^{\rm out}_o G^{\rm in}_i\,
        e^{-2\pi i\,[\delta\tau^{\rm in}_i + (\delta + e_{oi})\tau^{\rm out}_o]}\,
        \overline{\Big[1 - B_k^T(-i(\delta + u_i) - A_k)^{-1}B_k\Big]_{oi}},

(the bar: a VNA's :math:`e^{+j\omega t}` phasors are the conjugate of the
model's response; ``convention="physics"`` for data in the model's own
convention), fitted to all measured elements :math:`(o, i)` of all pump settings :math:`k`
at once by minimising

.. math::

    \chi^2 = \sum_{k,o,i,\delta}
        \frac{|D_{k,oi}(\delta) - M_{k,oi}(\delta)|^2}{\sigma_{oi}^2}

(real and imaginary parts as separate residuals; :math:`\sigma` is the noise
per quadrature, see :mod:`labnr.fit.result`). The parametrisation — mode
detunings and linewidths, couplings and phases per link, or for pump
calibration :math:`\eta_t` and line phase :math:`\theta_t` per tone with
:math:`c_k = \eta_t A_{t,k} e^{i(\varphi_{t,k}+\theta_t)}`, Stark coefficients
— and why only the loop phases are fitted (gauge) are in
:mod:`labnr.fit.smatrix_params`; the line parameters (reference input port
fixed) in :mod:`labnr.fit.smatrix_model`.

Speed: one evaluation computes every setting in one batched call of
:func:`labnr.model.linear.response`; the Jacobian is analytic (pole–residue
form), so the optimiser needs one model and one Jacobian evaluation per iteration (MINPACK
Levenberg–Marquardt through lmfit's ``leastsq`` by default, see ``method``).

Example
-------
.. code-block:: python

    from labnr.fit import FitLink, FitMode, SMatrixData, fit_smatrix
    from labnr.measure import load

    data = SMatrixData.from_dataset(load(7))
    modes = [FitMode("a", 24e6), FitMode("b", 30e6), FitMode("c", 36e6)]
    links = [FitLink("a", "b", g=12e6), FitLink("b", "c", g=12e6), FitLink("a", "c", g=12e6)]
    result = fit_smatrix(data, modes, links)
    print(result.fit_report())
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lmfit
import numpy as np
import xarray as xr

from labnr.fit.result import FitError, FitResult, Trace
from labnr.fit.smatrix_data import SMatrixData
from labnr.fit.smatrix_guess import init_lines, scan_loops
from labnr.fit.smatrix_model import SMatrixModel
from labnr.fit.smatrix_params import FitLink, FitMode, build
from labnr.model import Mode, Network

__all__ = ["FitLink", "FitMode", "SMatrixData", "SMatrixFitResult", "fit_smatrix"]

#: A fit with reduced chi-square above this did not find the model in the data (a failure).
MAX_REDCHI = 10.0
#: Parameters (by name prefix) whose ending on a bound is a failure, not a warning.
BOUND_FAILURES = ("detuning", "kappa_ext", "delay")
#: kappa_int below -this x its error: non-physical (a warning).
KAPPA_INT_SIGMAS = 2.0
#: kappa_ext or a port gain below this x its error: not in the data (a failure).
SIGNIFICANCE = 5.0


class SMatrixFitResult(FitResult):
    """A :class:`~labnr.fit.result.FitResult` that also rebuilds the fitted device.

    Extra attributes: ``model`` (the :class:`~labnr.fit.smatrix_model.SMatrixModel`,
    whose ``params`` hold the optimiser's starting values), ``data`` (the
    :class:`~labnr.fit.smatrix_data.SMatrixData`) and ``sigma`` (the noise per
    quadrature used, broadcast to the data's shape).
    """

    model: SMatrixModel
    data: SMatrixData
    sigma: np.ndarray
    derived: dict[str, str]

    def add_derived(self, name: str, value: float, error: float, note: str = "") -> None:
        """Record a quantity derived from the fit (in ``values``/``errors`` and the report)."""
        if not hasattr(self, "derived"):
            self.derived = {}
        self.values[name] = float(value)
        self.errors[name] = float(error)
        self.derived[name] = note

    def fit_report(self, **kws: Any) -> str:
        """lmfit's report, labnr's statistics, then the derived quantities."""
        text = super().fit_report(**kws)
        derived = getattr(self, "derived", {})
        if not derived:
            return text
        lines = ["[[derived]]"]
        for name, note in derived.items():
            why = f"  ({note})" if note else ""
            lines.append(f"    {name} = {self.values[name]:.8g} +/- {self.errors[name]:.3g}{why}")
        return text + "\n" + "\n".join(lines)

    def network(self, setting: int = 0) -> Network:
        """The fitted device at pump setting ``setting`` as a :class:`labnr.model.Network`."""
        q = self.model.par.quantities(self.values)
        modes = [
            Mode(
                m.name,
                kappa_ext=max(float(q["kext"][setting, i]), 0.0),
                kappa_int=max(float(q["kint"][setting, i]), 0.0),
                detuning=float(q["det"][setting, i]),
            )
            for i, m in enumerate(self.model.par.modes)
        ]
        net = Network(modes)
        for j, lk in enumerate(self.model.par.links):
            g, phi = float(q["g"][setting, j]), float(q["phi"][setting, j])
            net.beamsplitter(lk.a, lk.b, abs(g), float(np.angle(np.exp(1j * phi))))
        return net

    def predict(self) -> np.ndarray:
        """The fitted measured S-matrices, (K, F, P, P)."""
        return self.model.evaluate(self.values)


def _fit_modes(modes: Sequence[FitMode | Mode]) -> list[FitMode]:
    return [m if isinstance(m, FitMode) else FitMode.from_mode(m) for m in modes]


def _fit_links(links: Sequence[FitLink | tuple]) -> list[FitLink]:
    return [lk if isinstance(lk, FitLink) else FitLink(*lk) for lk in links]


def _sigma(sigma: Any, data: SMatrixData, tau: np.ndarray) -> tuple[np.ndarray, bool, list[str]]:
    """σ broadcast to (K, F, P, P), whether it was estimated, and warnings."""
    shape = data.S.shape
    if sigma is not None:
        s = np.broadcast_to(np.asarray(sigma, dtype=float), shape)
        if not np.all(s[data.valid] > 0):
            raise ValueError("sigma must be > 0 for every measured point")
        return s, False, []
    est = data.noise(np.where(np.isfinite(tau), tau, 0.0))
    if not np.any(np.isfinite(est)) or not np.nanmax(est) > 0:
        raise ValueError(
            "cannot estimate the noise of any element (noiseless or too few points); pass sigma"
        )
    top = float(np.nanmax(est))
    est = np.where(np.isfinite(est), np.maximum(est, 1e-3 * top), top)
    warn = [
        "sigma estimated per element from second differences of the delay-corrected "
        f"traces (median {np.median(est):.3g}); pass sigma for a stricter chi-square test"
    ]
    return np.broadcast_to(est[None, None], shape), True, warn


class _Objective:
    """Residual and Jacobian callables for lmfit, sharing one model evaluation.

    The residual is ``[Re, Im]((M - D) / sigma)`` over the measured points; the
    Jacobian is returned one row per parameter (``col_deriv``, MINPACK's own
    layout) or transposed for ``least_squares``.
    """

    def __init__(
        self,
        model: SMatrixModel,
        data: np.ndarray,
        valid: np.ndarray,
        sigma: np.ndarray,
        col_deriv: bool = True,
    ) -> None:
        self.model = model
        self.valid = None if np.all(valid) else valid
        self.d = data[valid]
        self.inv = 1.0 / sigma[valid]
        self.col_deriv = col_deriv
        self.var_names = [n for n, p in model.params.items() if p.vary and not p.expr]
        self._key: tuple | None = None
        self._M: np.ndarray | None = None

    def _model(self, values: Mapping[str, float]) -> np.ndarray:
        key = tuple(values[n] for n in self.var_names)
        if key != self._key or self._M is None:
            self._M, self._key = self.model.evaluate(values), key
        return self._M

    def _pick(self, x: np.ndarray, lead: int = 0) -> np.ndarray:
        """Measured points of ``x`` (leading axes kept), flattened."""
        if self.valid is None:
            return x.reshape(x.shape[:lead] + (-1,))
        return x[(slice(None),) * lead + (self.valid,)]

    def residual(self, params: lmfit.Parameters) -> np.ndarray:
        r = (self._pick(self._model(params.valuesdict())) - self.d) * self.inv
        return np.concatenate([r.real, r.imag])

    def jacobian(self, params: lmfit.Parameters) -> np.ndarray:
        values = params.valuesdict()
        J = self._pick(self.model.jacobian(values, self.var_names, self._model(values)), lead=1)
        n = J.shape[1]
        out = np.empty((J.shape[0], 2 * n))
        np.multiply(J.real, self.inv, out=out[:, :n])
        np.multiply(J.imag, self.inv, out=out[:, n:])
        return out if self.col_deriv else out.T


def fit_smatrix(
    data: SMatrixData | xr.Dataset,
    modes: Sequence[FitMode | Mode],
    links: Sequence[FitLink | tuple],
    *,
    sigma: float | np.ndarray | None = None,
    reference: str | None = None,
    fixed: Iterable[str] = (),
    scan_loop: bool = True,
    detuning_range: float | None = None,
    max_nfev: int = 200,
    method: str = "leastsq",
    convention: str = "engineering",
    raise_on_failure: bool = True,
) -> SMatrixFitResult:
    r"""Fit the coupled-mode model to every measured element of every pump setting.

    Parameters
    ----------
    data : SMatrixData or xarray.Dataset
        The measured S-matrices (a Dataset from :func:`labnr.measure.load` is
        converted with :meth:`SMatrixData.from_dataset`).
    modes : sequence of FitMode or labnr.model.Mode
        The model's modes with starting values (a user's guesses are fine:
        frequencies within about half a linewidth, couplings within ~50 %).
    links : sequence of FitLink
        Beam-splitter links. Coupling mode (``FitLink(a, b, g, phase)``) fits
        :math:`g` and :math:`\phi` per setting; pump mode (``FitLink(a, b,
        tone=t, eta=..., line_phase=...)``) fits :math:`\eta_t`, :math:`\theta_t`
        with the tone's known amplitudes and phases of ``data``.
    sigma : float or array, optional
        Noise per quadrature, broadcastable to (K, F, P, P). Default: estimated
        per element from the data (:meth:`SMatrixData.noise`).
    reference : str, optional
        Port whose input gain/phase/delay are fixed (default: the first).
    fixed : iterable of str
        Parameter names to hold at their starting values.
    scan_loop : bool
        Start the loop phases at the best of a 12-point grid (plus the guess).
    detuning_range : float, optional
        Detunings may move this far (plus two linewidths) from their guesses,
        Hz. Default: half the offset span.
    max_nfev : int
        Most model evaluations of the optimiser.
    method : {"leastsq", "least_squares"}
        lmfit's Levenberg–Marquardt (MINPACK, the default) or scipy's
        trust-region reflective ``least_squares`` (``x_scale="jac"``); both get
        the analytic Jacobian. MINPACK is the default because ``least_squares``
        takes a dense SVD of the (2N × n) Jacobian in every iteration, which
        costs 0.1–0.7 s for the benchmark problem (43 000 × 30) with a
        multi-threaded BLAS on a busy two-core machine, against a QR in MINPACK.
    convention : {"engineering", "physics"}
        The data are a VNA's phasors (:math:`e^{+j\omega t}`: the conjugate of
        the model's S times the lines; default, also the virtual lab's) or in
        the model's own :math:`e^{-i\omega t}` convention (see
        :mod:`labnr.fit.smatrix_model`).
    raise_on_failure : bool
        Raise :class:`~labnr.fit.result.FitError` (with the flagged result as
        ``err.result``) when the fit fails; else return it with ``success`` False.

    Returns
    -------
    SMatrixFitResult
        Values and 1σ errors of every parameter (``<m>_detuning``,
        ``<m>_kappa_ext``, ``<m>_kappa_int``, ``g_<a>_<b>``/``phase_<a>_<b>``
        or ``eta_<t>``/``theta_<t>``, ``<m>_stark_<t>``, ``loop_<chord>``,
        ``gain|phase|delay_out|in_<port>``), reduced χ², warnings, a trace per
        element and setting, and :meth:`SMatrixFitResult.network`.

    Raises
    ------
    FitError
        The optimiser did not converge, error bars could not be estimated, a
        detuning/linewidth/delay ended on its bound, a :math:`\kappa_{\rm ext}`
        or port gain is below 5 times its error (nothing to fit there), the
        fitted network is unstable, or :math:`\chi^2_\nu > 10` (the model is
        not in the data).
    """
    start = time.perf_counter()
    data, model, fm = _setup(data, modes, links, reference, detuning_range, method, convention)
    warnings = _hold(model.params, fixed, data)
    tau, _ = init_lines(model, data.S, data.valid, model.params.valuesdict())
    sig, estimated, warn = _sigma(sigma, data, tau)
    warnings += warn
    shifts = scan_loops(model, data.S, data.valid, 1.0 / sig**2) if scan_loop else {}
    raw = _optimise(model, data, sig, method, max_nfev)
    failures, more = _checks(raw, model, fm)
    info = {
        "kind": "smatrix",
        "convention": convention,
        "ports": list(data.ports),
        "reference_ports": dict(model.references),
        "settings": list(data.labels or []),
        "sigma_estimated": estimated,
        "loops": {
            c: [(model.par.links[j].name, s) for j, s in cyc] for c, cyc in model.par.loops.items()
        },
        "loop_scan_shift": shifts,
        "nfev": int(raw.nfev),
    }
    fit = model.evaluate(raw.params.valuesdict())
    result = SMatrixFitResult(
        raw,
        _traces(data, fit, sig),
        model_name="smatrix",
        run_id=data.run_id,
        warnings=warnings + more,
        failures=failures,
        info=info,
    )
    _scale_errors(result)
    result.model, result.data, result.sigma = model, data, sig
    result.info["seconds"] = round(time.perf_counter() - start, 4)
    if raise_on_failure and not result.success:
        raise FitError(f"S-matrix fit failed: {result.message}", result=result)
    return result


def _setup(
    data: SMatrixData | xr.Dataset,
    modes: Sequence[FitMode | Mode],
    links: Sequence[FitLink | tuple],
    reference: str | None,
    detuning_range: float | None,
    method: str,
    convention: str,
) -> tuple[SMatrixData, SMatrixModel, list[FitMode]]:
    """Check the options; build the data, the parametrisation and the model."""
    if method not in ("leastsq", "least_squares"):
        raise ValueError(f"method={method!r}; allowed 'leastsq' or 'least_squares'")
    if isinstance(data, xr.Dataset):
        data = SMatrixData.from_dataset(data)
    fm, fl = _fit_modes(modes), _fit_links(links)
    span = float(np.ptp(data.offsets)) if data.offsets.size > 1 else 0.0
    drange = span / 2 if detuning_range is None else float(detuning_range)
    par = build(fm, fl, data.ports, data.amplitudes, data.phases, data.settings, drange)
    ref = data.ports[0] if reference is None else reference
    if ref not in data.ports:
        raise ValueError(f"reference port {ref!r} is not one of the data's ports {data.ports}")
    model = SMatrixModel(par, data.offsets, data.shift, data.excess, ref, convention)
    return data, model, fm


def _optimise(
    model: SMatrixModel, data: SMatrixData, sig: np.ndarray, method: str, max_nfev: int
) -> lmfit.minimizer.MinimizerResult:
    """Run lmfit with the analytic Jacobian from ``model.params``; phases wrapped after."""
    objective = _Objective(model, data.S, data.valid, sig, col_deriv=method == "leastsq")
    mini = lmfit.Minimizer(objective.residual, model.params, scale_covar=False)
    kws: dict[str, Any] = {"Dfun": objective.jacobian, "max_nfev": max_nfev}
    if method == "least_squares":
        kws.update(x_scale="jac", ftol=1e-10, xtol=1e-10, gtol=1e-10)
    else:
        kws.update(ftol=1e-10, xtol=1e-10, col_deriv=True)
    raw = mini.minimize(method=method, **kws)
    _wrap_phases(raw.params, model)
    return raw


def _hold(params: lmfit.Parameters, fixed: Iterable[str], data: SMatrixData) -> list[str]:
    """Hold the parameters named in ``fixed`` and those no data constrain."""
    warnings = []
    for name in fixed:
        if name not in params:
            raise ValueError(f"fixed names unknown parameter {name!r}; known: {list(params)}")
        params[name].set(vary=False)
    for tone, amp in data.amplitudes.items():
        if np.all(np.asarray(amp) == 0):
            for name in (f"eta_{tone}", f"theta_{tone}"):
                if name in params and params[name].vary:
                    params[name].set(vary=False)
                    warnings.append(f"tone {tone!r} is off at every setting: {name} not fitted")
    return warnings


def _wrap_phases(params: lmfit.Parameters, model: SMatrixModel) -> None:
    """Wrap phase parameters to (-pi, pi], then each loop phase too (moving its chord)."""
    for name, p in params.items():
        if p.expr is None and name.startswith(("phase_", "theta_")):
            p.value = float(np.angle(np.exp(1j * p.value)))
    params.update_constraints()
    for chord in model.par.loops:
        lk = next(x for x in model.par.links if x.name == chord)
        stem = f"loop_{chord}"
        for lname in [n for n in params if n == stem or n.startswith(f"{stem}_s")]:
            pname = (
                f"theta_{lk.tone}" if lk.tone is not None else f"phase_{chord}{lname[len(stem) :]}"
            )
            if not params[pname].vary:
                continue
            loop = params[lname].value
            # the chord enters its loop with sign -1 (smatrix_params.loop_of)
            params[pname].value += loop - float(np.angle(np.exp(1j * loop)))
            params.update_constraints()


def _traces(data: SMatrixData, fit: np.ndarray, sig: np.ndarray) -> list[Trace]:
    out = []
    for k in range(data.settings):
        for o, po in enumerate(data.ports):
            for i, pi in enumerate(data.ports):
                ok = data.valid[k, :, o, i]
                if not np.any(ok):
                    continue
                label = "" if data.settings == 1 else f" @ {data.labels[k]}"  # type: ignore[index]
                out.append(
                    Trace(
                        f"S_{po}_{pi}{label}",
                        data.offsets[ok],
                        data.S[k, ok, o, i],
                        fit[k, ok, o, i],
                        sig[k, ok, o, i],
                    )
                )
    return out


def _checks(
    raw: lmfit.minimizer.MinimizerResult, model: SMatrixModel, modes: Sequence[FitMode]
) -> tuple[list[str], list[str]]:
    """Failures and warnings beyond lmfit's own (bounds, physics, stability)."""
    failures, warnings = [], []
    for name, p in raw.params.items():
        if not p.vary or p.expr:
            continue
        width = (p.max - p.min) if np.isfinite(p.max - p.min) else max(abs(p.value), 1.0)
        at = [b for b in (p.min, p.max) if np.isfinite(b) and abs(p.value - b) <= 1e-6 * width]
        if at:
            text = f"{name} = {p.value:.6g} ended on its bound {at[0]:.6g}"
            if name.split("_")[0] in BOUND_FAILURES or name.endswith(BOUND_FAILURES):
                failures.append(text)
            else:
                warnings.append(text)
    for name, p in raw.params.items():
        if p.vary and (name.endswith("_kappa_ext") or name.startswith("gain_")):
            if p.stderr is not None and not p.value > SIGNIFICANCE * p.stderr:
                failures.append(
                    f"{name} = {p.value:.4g} +/- {p.stderr:.3g} is not significant (< "
                    f"{SIGNIFICANCE:g} sigma): the data do not show this mode or port"
                )
    for m in modes:
        p = raw.params[f"{m.name}_kappa_int"]
        if p.stderr and p.value < -KAPPA_INT_SIGMAS * p.stderr:
            warnings.append(
                f"{m.name}_kappa_int = {p.value:.4g} Hz is negative beyond {KAPPA_INT_SIGMAS:g} "
                f"sigma ({p.stderr:.3g}): non-physical (line calibration or model error?)"
            )
    A, _, _ = model.matrices(raw.params.valuesdict())
    worst = float(np.max(np.linalg.eigvals(A).real))
    if worst >= 0:
        failures.append(f"the fitted network is unstable (eigenvalue real part {worst:.4g} Hz)")
    return failures, warnings


def _scale_errors(result: FitResult) -> None:
    """Check χ²ν; scale the errors by sqrt(χ²ν) when it is significantly above 1."""
    redchi = result.redchi
    if not math.isfinite(redchi):
        return
    if redchi > MAX_REDCHI:
        result.success = False
        why = (
            f"reduced chi-square {redchi:.3g} > {MAX_REDCHI:g}: the model does not describe "
            "the data (a wrong structure, a wrong sigma, a local minimum - check the guesses - "
            "or data in the other phase convention, see convention=)"
        )
        result.message = "; ".join(x for x in (result.message, why) if x)
        return
    if redchi > 1 + 5 * math.sqrt(2 / max(result.nfree, 1)):
        factor = math.sqrt(redchi)
        for name, p in result.params.items():
            if p.stderr is not None and math.isfinite(p.stderr):
                p.stderr *= factor
                result.errors[name] = float(p.stderr)
        result.warnings.append(
            f"reduced chi-square {redchi:.3g} is significantly above 1: errors scaled by "
            f"sqrt(chi2_nu) = {factor:.3g}"
        )
