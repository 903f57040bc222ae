r"""Output noise and added noise of a linear network.

Every input channel (each port and each internal bath, see
:attr:`Network.channels`) carries thermal noise with occupation :math:`n_k`;
its symmetrised fluctuations are :math:`n_k + 1/2` in both the :math:`a` and
:math:`a^\dagger` columns of the doubled scattering matrix. Hence the output
occupation of port :math:`o` is

.. math::

    n_{o} + \tfrac12 = \sum_k |S_{ok}|^2 \left(n_k + \tfrac12\right),

summed over all channels and their conjugates, and the noise added by the
device, referred to the input ``in``, is

.. math::

    n_{\rm add} = \frac{\sum_{k \ne \rm in} |S_{ok}|^2 (n_k + \tfrac12)}{|S_{o,\rm in}|^2}.

A phase-preserving amplifier at large gain adds :math:`n_{\rm add} \to 1/2`
(the quantum limit); a lossless circulator adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from labnr.model._validate import finite_real
from labnr.model.network import Network


def _occupations(net: Network, thermal_occupation: float | Mapping[str, float]) -> np.ndarray:
    """Occupation per doubled channel, from a scalar or a {channel: n} mapping."""
    channels = net.channels
    if isinstance(thermal_occupation, Mapping):
        unknown = sorted(set(thermal_occupation) - set(channels))
        if unknown:
            raise ValueError(
                f"thermal_occupation names unknown channels {unknown}; "
                f"the network's channels are {channels}"
            )
        n = np.array(
            [
                finite_real(thermal_occupation.get(c, 0.0), f"thermal_occupation[{c!r}]", minimum=0)
                for c in channels
            ]
        )
    else:
        n = np.full(len(channels), finite_real(thermal_occupation, "thermal_occupation", minimum=0))
    return np.concatenate([n, n])


def output_noise(
    net: Network,
    offset: float | np.ndarray,
    thermal_occupation: float | Mapping[str, float] = 0.0,
) -> np.ndarray:
    """Output occupation (quanta) of every port.

    Parameters
    ----------
    net : Network
        The network.
    offset : float or array_like
        Offset(s) in Hz.
    thermal_occupation : float or mapping
        Occupation of every input channel, or a mapping from channel name
        (port name or ``'<mode>.int'``) to occupation; missing channels are
        at zero temperature.

    Returns
    -------
    numpy.ndarray
        Shape ``offset.shape + (P,)``: the output occupation :math:`n_o` of
        each port (0 for vacuum out).
    """
    S = net.full_scattering(offset)
    n = _occupations(net, thermal_occupation)
    p = len(net.ports)
    power = np.abs(S[..., :p, :]) ** 2
    return power @ (n + 0.5) - 0.5


def added_noise(
    net: Network,
    out: str,
    in_: str,
    offset: float | np.ndarray,
    thermal_occupation: float | Mapping[str, float] = 0.0,
    in_conjugate: bool | None = None,
) -> np.ndarray:
    """Noise added between port ``in_`` and port ``out``, in quanta referred to the input.

    Parameters
    ----------
    net : Network
        The network.
    out, in_ : str
        Output and input port names.
    offset : float or array_like
        Offset(s) in Hz.
    thermal_occupation : float or mapping
        As in :func:`output_noise`.
    in_conjugate : bool, optional
        Whether the signal reaches ``out`` as :math:`a_{in}` (False) or
        phase-conjugated as :math:`a_{in}^\\dagger` (True, e.g. a
        non-degenerate amplifier's idler output). None picks, at each offset,
        the column with the larger gain.

    Returns
    -------
    numpy.ndarray
        :math:`n_{add}` with the shape of ``offset``; ``inf`` where nothing is
        transmitted.
    """
    S = net.full_scattering(offset)
    n = _occupations(net, thermal_occupation)
    c = len(net.channels)
    o = net.port_index(out)
    i = net.port_index(in_)
    power = np.abs(S[..., o, :]) ** 2  # (..., 2C)
    if in_conjugate is None:
        use_conj = power[..., i + c] > power[..., i]
    else:
        use_conj = np.full(power.shape[:-1], bool(in_conjugate))
    col = np.where(use_conj, i + c, i)
    signal = np.take_along_axis(power, col[..., None], axis=-1)[..., 0]
    total = power @ (n + 0.5)
    noise = total - signal * (n[i] + 0.5)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(signal > 0, noise / signal, np.inf)
