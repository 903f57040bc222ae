"""FitResult, complex goodness of fit, noise estimation (labnr.fit.result)."""

from __future__ import annotations

import io
import json
import math

import lmfit
import numpy as np
import pytest
from matplotlib.figure import Figure

from labnr.fit import FitError, FitResult, Trace, complex_residual_stats, estimate_noise


def _line(x: np.ndarray, amp: float, slope: float) -> np.ndarray:
    return amp * np.exp(1j * slope * x)


def _model_fit(seed: int = 0, sigma: float = 0.01, **fit_kws: object) -> tuple:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, 300)
    data = _line(x, 2.0, 3.0) + sigma * (rng.normal(size=x.size) + 1j * rng.normal(size=x.size))
    model = lmfit.Model(_line, independent_vars=["x"])
    params = model.make_params(amp={"value": 1.5, "min": 0}, slope=2.5)
    raw = model.fit(data, params, x=x, weights=np.full(x.size, 1 / sigma), **fit_kws)
    return x, data, raw


def _result(raw: lmfit.model.ModelResult, x: np.ndarray, data: np.ndarray, **kw: object):
    return FitResult(raw, [Trace("S", x, data, raw.best_fit, 0.01)], model_name="line", **kw)


def test_complex_residual_stats_counts_both_quadratures() -> None:
    data = np.array([1 + 1j, 2 + 0j, 0 + 0j])
    model = np.array([1 + 0j, 2 + 2j, 0 + 0j])
    st = complex_residual_stats(data, model, sigma=0.5, nvarys=2)
    assert st.chi2 == pytest.approx((1 + 4) / 0.25)
    assert (st.ndata, st.nvarys, st.nfree) == (6, 2, 4)
    assert st.redchi == pytest.approx(st.chi2 / 4)
    per_point = complex_residual_stats(data, model, sigma=np.array([0.5, 1.0, 1.0]))
    assert per_point.chi2 == pytest.approx(1 / 0.25 + 4)
    assert math.isnan(complex_residual_stats(data, model, 1.0, nvarys=6).redchi)


@pytest.mark.parametrize("sigma", [0.0, -1.0, np.array([1.0, 0.0, 1.0])])
def test_complex_residual_stats_rejects_nonpositive_sigma(sigma: object) -> None:
    with pytest.raises(ValueError, match="sigma must be > 0"):
        complex_residual_stats(np.ones(3), np.ones(3), sigma)


def test_complex_residual_stats_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        complex_residual_stats(np.ones(3), np.ones(4), 1.0)


def test_estimate_noise_on_smooth_trace_with_a_sharp_feature() -> None:
    rng = np.random.default_rng(3)
    f = np.linspace(-5e6, 5e6, 401)
    smooth = 0.3 * np.exp(-2j * np.pi * f * 80e-9) * (1 - 1.5 / (1 - 2j * f / 0.4e6))
    sigma = 2e-3
    est = [
        estimate_noise(smooth + sigma * (rng.normal(size=f.size) + 1j * rng.normal(size=f.size)))
        for _ in range(20)
    ]
    assert np.mean(est) == pytest.approx(sigma, rel=0.05)
    assert np.std(est) < 0.1 * sigma


def test_estimate_noise_rejects_short_or_noiseless_traces() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        estimate_noise(np.ones(4, complex))
    with pytest.raises(ValueError, match="noiseless"):
        estimate_noise(np.linspace(0, 1, 50) * (1 + 1j))


def test_fitresult_matches_lmfit_chi2_and_keeps_the_model_result() -> None:
    x, data, raw = _model_fit()
    res = _result(raw, x, data, run_id=7)
    assert res.success and res.message == ""
    assert res.chi2 == pytest.approx(raw.chisqr, rel=1e-10)  # weights 1/σ on both quadratures
    assert res.ndata == 2 * x.size == raw.ndata
    assert res.nfree == res.ndata - 2
    assert 0.8 < res.redchi < 1.2
    assert res.values["amp"] == pytest.approx(2.0, abs=5 * res.errors["amp"])
    assert res.errors["slope"] == pytest.approx(raw.params["slope"].stderr)
    assert -1 <= res.correlation("amp", "slope") <= 1
    assert "reduced chi-square" in res.fit_report()
    assert res.lmfit is raw and res.params is raw.params
    assert res.raise_if_failed() is res
    assert "line" in repr(res) and "ok" in repr(res)


def test_to_dict_is_json_serialisable_with_nan_as_null() -> None:
    x, data, raw = _model_fit()
    raw.params["slope"].stderr = None  # e.g. a fixed parameter
    res = _result(raw, x, data, run_id="run12", warnings=["careful"], info={"kind": "test"})
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["values"]["amp"] == pytest.approx(res.values["amp"])
    assert d["errors"]["slope"] is None
    assert d["run_id"] == "run12" and d["model"] == "line" and d["success"] is True
    assert d["warnings"] == ["careful"] and d["info"] == {"kind": "test"}
    assert d["redchi"] == pytest.approx(res.redchi) and d["timestamp"].endswith("+00:00")
    assert set(d["varying"]) == {"amp", "slope"}


def test_caller_failures_flag_the_result_and_raise_on_request() -> None:
    x, data, raw = _model_fit()
    res = _result(raw, x, data, failures=["no resonance in the band"])
    assert not res.success and "no resonance" in res.message
    with pytest.raises(FitError, match="no resonance") as err:
        res.raise_if_failed()
    assert err.value.result is res
    assert "FAILED" in repr(res)


def test_non_converged_fit_is_not_success_with_reason() -> None:
    x, data, raw = _model_fit(max_nfev=3)
    res = _result(raw, x, data)
    assert not res.success
    assert "did not converge" in res.message or "uncertainties" in res.message


def test_works_with_a_minimizer_result_of_a_global_fit() -> None:
    """Custom global fits (many traces, shared parameters) wrap a MinimizerResult."""
    rng = np.random.default_rng(5)
    x = np.linspace(0, 1, 100)
    truths = [(2.0, 3.0), (1.0, 3.0)]
    datas = [_line(x, a, s) + 0.01 * (rng.normal(size=100) + 1j * rng.normal(size=100))
             for a, s in truths]  # fmt: skip
    params = lmfit.create_params(a1=1.5, a2=0.5, slope=2.5)

    def models(p: lmfit.Parameters) -> list[np.ndarray]:
        return [_line(x, p[a].value, p["slope"].value) for a in ("a1", "a2")]

    def residual(p: lmfit.Parameters) -> np.ndarray:
        return np.concatenate(
            [((d - m) / 0.01).view(float) for d, m in zip(datas, models(p), strict=True)]
        )

    raw = lmfit.minimize(residual, params)
    fits = models(raw.params)
    traces = [Trace(f"S{i}", x, datas[i], fits[i], 0.01) for i in range(2)]
    res = FitResult(raw, traces, model_name="global")
    assert res.success and res.ndata == 400 and res.nvarys == 3
    assert res.chi2 == pytest.approx(raw.chisqr, rel=1e-10)
    assert "reduced chi-square" in res.fit_report()
    fig = res.plot(kind="complex")
    assert sum(ax.get_visible() for ax in fig.axes) == 2


@pytest.mark.parametrize(("kind", "naxes"), [("bode", 2), ("complex", 1)])
def test_plot_returns_a_figure_without_pyplot(kind: str, naxes: int) -> None:
    x, data, raw = _model_fit()
    fig = _result(raw, x, data).plot(kind=kind)
    assert isinstance(fig, Figure) and len(fig.axes) == naxes
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_plot_into_given_axes_and_validation() -> None:
    x, data, raw = _model_fit()
    res = _result(raw, x, data)
    fig = Figure()
    axes = fig.subplots(1, 2)
    assert res.plot(ax=axes) is fig
    assert len(axes[0].lines) == 2  # data and fit
    with pytest.raises(ValueError, match="need 2 axes"):
        res.plot(ax=axes[:1])
    with pytest.raises(ValueError, match="kind"):
        res.plot(kind="nyquist")  # type: ignore[arg-type]


def test_fitresult_needs_traces() -> None:
    x, data, raw = _model_fit()
    with pytest.raises(ValueError, match="at least one Trace"):
        FitResult(raw, [], model_name="x")
