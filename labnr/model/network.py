r"""Coupled modes, their parametric couplings, and their scattering matrix.

Conventions (see ``DESIGN.md``): every frequency and rate is an ordinary
frequency in Hz — a linewidth :math:`\kappa` is the FWHM in Hz, a coupling
:math:`g` is :math:`g/2\pi` in Hz — and phases are in radians. Each mode lives
in its own rotating frame; its ``detuning`` is its frequency minus the frame
frequency. A mode with ``kappa_ext > 0`` has a port named after it.

The Hamiltonian is

.. math::

    H = \sum_j \Delta_j a_j^\dagger a_j
      + \sum_{\rm bs} \left(g\,e^{i\phi} a^\dagger b + {\rm h.c.}\right)
      + \sum_{\rm sq} \left(g\,e^{i\phi} a^\dagger b^\dagger + {\rm h.c.}\right),

with input-output relations :math:`\dot a_j = -i[a_j, H] - \tfrac{\kappa_j}{2}
a_j + \sqrt{\kappa_{{\rm ext},j}}\, a_{j,\rm in}` and
:math:`a_{j,\rm out} = a_{j,\rm in} - \sqrt{\kappa_{{\rm ext},j}}\, a_j`.
The scattering matrix is evaluated by :func:`labnr.model.linear.response`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from labnr.model._validate import finite_array, finite_real
from labnr.model.linear import response

CouplingKind = Literal["beamsplitter", "squeezing"]


class UnstableNetworkError(RuntimeError):
    """Raised when the scattering matrix of an unstable network is requested."""


@dataclass(frozen=True)
class Mode:
    """One bosonic mode in its rotating frame.

    Parameters
    ----------
    name : str
        Unique identifier; also the name of the mode's port if it has one.
    kappa_ext : float
        Coupling rate to its port (FWHM contribution), Hz. ``> 0`` gives the
        mode a port.
    kappa_int : float
        Internal loss rate, Hz (an unobserved bath).
    detuning : float
        Mode frequency minus its frame frequency, Hz.
    """

    name: str
    kappa_ext: float = 0.0
    kappa_int: float = 0.0
    detuning: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(
                f"Mode name {self.name!r} is not allowed; use a non-empty identifier "
                "such as 'a' or 'mech1'"
            )
        where = f"Mode {self.name!r}"
        object.__setattr__(
            self, "kappa_ext", finite_real(self.kappa_ext, f"{where} kappa_ext", minimum=0.0)
        )
        object.__setattr__(
            self, "kappa_int", finite_real(self.kappa_int, f"{where} kappa_int", minimum=0.0)
        )
        object.__setattr__(self, "detuning", finite_real(self.detuning, f"{where} detuning"))

    @property
    def kappa(self) -> float:
        """Total linewidth (FWHM) in Hz."""
        return self.kappa_ext + self.kappa_int

    @property
    def has_port(self) -> bool:
        """True if the mode couples to a port."""
        return self.kappa_ext > 0.0


@dataclass(frozen=True)
class Coupling:
    """A parametric coupling between two modes.

    ``beamsplitter``: :math:`g e^{i\\phi} a^\\dagger b + h.c.`;
    ``squeezing``: :math:`g e^{i\\phi} a^\\dagger b^\\dagger + h.c.`.
    """

    kind: CouplingKind
    a: str
    b: str
    g: float
    phase: float = 0.0

    @property
    def value(self) -> complex:
        """Complex coupling :math:`g e^{i\\phi}` in Hz."""
        return self.g * np.exp(1j * self.phase)


class Network:
    """A network of coupled modes and its scattering matrix.

    Parameters
    ----------
    modes : sequence of Mode
        The modes, in the order that sets the port order.

    Examples
    --------
    >>> net = Network([Mode("a", kappa_ext=1e6), Mode("b", kappa_ext=1e6)])
    >>> net.beamsplitter("a", "b", g=0.5e6).scattering(0.0, nambu=False).shape
    (2, 2)
    """

    def __init__(self, modes: Sequence[Mode]) -> None:
        modes = list(modes)
        if not modes:
            raise ValueError("Network needs at least one Mode; got an empty list")
        for m in modes:
            if not isinstance(m, Mode):
                raise ValueError(f"Network modes must be Mode objects; got {m!r}")
        names = [m.name for m in modes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate mode names {dupes}; every Mode name must be unique")
        self._modes = modes
        self._index = {n: i for i, n in enumerate(names)}
        self._couplings: list[Coupling] = []

    # ------------------------------------------------------------------ structure
    @property
    def modes(self) -> list[Mode]:
        """The modes, in order (a copy)."""
        return list(self._modes)

    @property
    def couplings(self) -> list[Coupling]:
        """The couplings, in the order they were added (a copy)."""
        return list(self._couplings)

    @property
    def ports(self) -> list[str]:
        """Port names (modes with ``kappa_ext > 0``), in mode order."""
        return [m.name for m in self._modes if m.has_port]

    @property
    def has_squeezing(self) -> bool:
        """True if any coupling is of the two-mode-squeezing kind."""
        return any(c.kind == "squeezing" for c in self._couplings)

    def mode(self, name: str) -> Mode:
        """Return the mode called ``name``."""
        return self._modes[self._mode_index(name)]

    def _mode_index(self, name: str) -> int:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown mode {name!r}; the network's modes are {list(self._index)}"
            ) from None

    def port_index(self, name: str, conjugate: bool = False) -> int:
        """Index of a port in the scattering matrix.

        Parameters
        ----------
        name : str
            Port (mode) name.
        conjugate : bool
            If True, the index of the port's conjugate (:math:`a^\\dagger`) in
            the doubled basis ``[p1..pP, p1†..pP†]``.
        """
        ports = self.ports
        if name not in ports:
            raise ValueError(f"unknown port {name!r}; the network's ports are {ports}")
        i = ports.index(name)
        return i + len(ports) if conjugate else i

    def copy(self) -> Network:
        """An independent copy (modes are immutable and shared)."""
        return self._clone()

    def _clone(self) -> Network:
        new = Network.__new__(Network)
        new._modes = list(self._modes)
        new._index = dict(self._index)
        new._couplings = list(self._couplings)
        return new

    # ------------------------------------------------------------------ building
    def beamsplitter(self, a: str, b: str, g: float, phase: float = 0.0) -> Network:
        """Add :math:`H = g e^{i\\phi} a^\\dagger b + h.c.` (frequency conversion).

        Returns the network itself, so calls can be chained.
        """
        return self._add("beamsplitter", a, b, g, phase)

    def squeezing(self, a: str, b: str, g: float, phase: float = 0.0) -> Network:
        """Add :math:`H = g e^{i\\phi} a^\\dagger b^\\dagger + h.c.` (parametric gain).

        Returns the network itself, so calls can be chained.
        """
        return self._add("squeezing", a, b, g, phase)

    def _add(self, kind: CouplingKind, a: str, b: str, g: float, phase: float) -> Network:
        self._check_link(kind, a, b, g, phase)
        if self._find(a, b) is not None:
            raise ValueError(
                f"modes {a!r} and {b!r} are already coupled; use set_coupling() to change "
                "the existing coupling"
            )
        self._couplings.append(Coupling(kind, a, b, float(g), float(phase)))
        return self

    def _check_link(self, kind: str, a: str, b: str, g: float, phase: float) -> None:
        self._mode_index(a)
        self._mode_index(b)
        if a == b:
            raise ValueError(
                f"a {kind} coupling of mode {a!r} to itself is not allowed; "
                "couple two different modes"
            )
        finite_real(g, f"{kind} coupling {a}-{b} g", minimum=0.0)
        finite_real(phase, f"{kind} coupling {a}-{b} phase")

    def _find(self, a: str, b: str) -> int | None:
        for i, c in enumerate(self._couplings):
            if {c.a, c.b} == {a, b}:
                return i
        return None

    def coupling(self, a: str, b: str) -> Coupling:
        """The coupling between modes ``a`` and ``b``, oriented as ``a -> b``.

        The phase is reported for the orientation asked: the same beam
        splitter seen as ``b, a`` has the opposite phase.
        """
        i = self._find(a, b)
        if i is None:
            raise ValueError(f"modes {a!r} and {b!r} are not coupled in this network")
        c = self._couplings[i]
        if c.a == a or c.kind == "squeezing":
            return replace(c, a=a, b=b)
        return replace(c, a=a, b=b, phase=-c.phase)

    def set_coupling(
        self, a: str, b: str, g: float | None = None, phase: float | None = None
    ) -> Network:
        """Change the magnitude and/or phase of an existing coupling (``a -> b``).

        Returns the network itself.
        """
        current = self.coupling(a, b)
        g = current.g if g is None else g
        phase = current.phase if phase is None else phase
        self._check_link(current.kind, a, b, g, phase)
        i = self._find(a, b)
        assert i is not None
        self._couplings[i] = Coupling(current.kind, a, b, float(g), float(phase))
        return self

    def with_couplings(self, values: dict[tuple[str, str], complex]) -> Network:
        """A copy with the given links set to complex couplings :math:`g e^{i\\phi}`."""
        new = self._clone()
        for (a, b), c in values.items():
            new.set_coupling(a, b, g=float(abs(c)), phase=float(np.angle(c)))
        return new

    # ------------------------------------------------------------------ matrices
    def hamiltonian_blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (H, G): the hopping matrix (with detunings) and the squeezing matrix.

        ``H`` is Hermitian, ``G`` symmetric; both N x N, Hz.
        """
        n = len(self._modes)
        H = np.diag([m.detuning for m in self._modes]).astype(complex)
        G = np.zeros((n, n), dtype=complex)
        for c in self._couplings:
            i, j = self._index[c.a], self._index[c.b]
            if c.kind == "beamsplitter":
                H[i, j] += c.value
                H[j, i] += np.conj(c.value)
            else:
                G[i, j] += c.value
                G[j, i] += c.value
        return H, G

    def dynamical_matrix(self, nambu: bool | None = None) -> np.ndarray:
        """The matrix :math:`A` of :math:`\\dot{\\mathbf a} = A\\mathbf a + B\\mathbf a_{in}`.

        Parameters
        ----------
        nambu : bool, optional
            Return the doubled (2N x 2N) matrix on ``[a.., a†..]``. Defaults
            to True exactly when the network squeezes.
        """
        nambu = self.has_squeezing if nambu is None else nambu
        H, G = self.hamiltonian_blocks()
        kappa = np.array([m.kappa for m in self._modes])
        A1 = -1j * H - np.diag(kappa) / 2
        if not nambu:
            if self.has_squeezing:
                raise ValueError(
                    "this network has squeezing couplings, which mix a and a†; "
                    "use the doubled (Nambu) basis (nambu=True)"
                )
            return A1
        A2 = -1j * G
        return np.block([[A1, A2], [np.conj(A2), np.conj(A1)]])

    def _input_matrix(self, internal: bool) -> tuple[np.ndarray, list[str]]:
        """Input couplings sqrt(kappa) to ports (and internal baths), with channel names."""
        cols: list[np.ndarray] = []
        names: list[str] = []
        n = len(self._modes)
        for i, m in enumerate(self._modes):
            if m.has_port:
                col = np.zeros(n)
                col[i] = np.sqrt(m.kappa_ext)
                cols.append(col)
                names.append(m.name)
        if internal:
            for i, m in enumerate(self._modes):
                if m.kappa_int > 0:
                    col = np.zeros(n)
                    col[i] = np.sqrt(m.kappa_int)
                    cols.append(col)
                    names.append(f"{m.name}.int")
        B = np.stack(cols, axis=1) if cols else np.zeros((n, 0))
        return B, names

    @property
    def channels(self) -> list[str]:
        """All input channels: ports, then internal baths named ``'<mode>.int'``."""
        return self._input_matrix(internal=True)[1]

    # ------------------------------------------------------------------ stability
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of the dynamical matrix (Hz); stable when all real parts < 0."""
        return np.linalg.eigvals(self.dynamical_matrix())

    def is_stable(self) -> bool:
        """True if every eigenvalue of the dynamical matrix decays.

        A mode with no damping at all (real part exactly 0) counts as not
        stable: its response diverges on resonance.
        """
        lam = self.eigenvalues()
        scale = max(float(np.max(np.abs(lam))), 1.0)
        return bool(np.all(lam.real < -1e-12 * scale))

    def _check_stable(self, allow_unstable: bool) -> None:
        if allow_unstable or self.is_stable():
            return
        lam = self.eigenvalues()
        worst = lam[np.argmax(lam.real)]
        raise UnstableNetworkError(
            f"the network is unstable: an eigenvalue of its dynamical matrix has real part "
            f"{worst.real:.4g} Hz >= 0 (eigenvalue {worst:.4g} Hz); couplings are past the "
            "parametric threshold or a mode is undamped. Pass allow_unstable=True to get "
            "the (unphysical) linear response anyway"
        )

    # ------------------------------------------------------------------ scattering
    def scattering(
        self,
        offset: float | Iterable[float] | np.ndarray,
        nambu: bool = True,
        allow_unstable: bool = False,
        method: str = "auto",
    ) -> np.ndarray:
        """Scattering matrix at offsets from the frame frequencies.

        Parameters
        ----------
        offset : float or array_like
            Offset(s) in Hz, shape ``(...)``.
        nambu : bool
            True (default): the doubled basis ``[p1..pP, p1†..pP†]``, shape
            ``(..., 2P, 2P)``. False: the ports only, ``(..., P, P)`` — only
            for networks without squeezing.
        allow_unstable : bool
            Return the linear response of an unstable network instead of
            raising :class:`UnstableNetworkError`.
        method : {"auto", "poles", "solve"}
            Numerical method, see :func:`labnr.model.linear.response`.

        Returns
        -------
        numpy.ndarray
            Complex S, indexed ``[..., out, in]``; convention
            :math:`a_{out} = a_{in} - \\sqrt{\\kappa_{ext}}\\, a`.
        """
        w = finite_array(offset, "scattering offset")
        shape = w.shape
        if not self.ports:
            raise ValueError("the network has no ports (no mode has kappa_ext > 0)")
        self._check_stable(allow_unstable)
        B, _ = self._input_matrix(internal=False)
        S = self._scatter(B, w.reshape(-1), nambu, method)
        return S.reshape(shape + S.shape[-2:])

    def _scatter(self, B: np.ndarray, w: np.ndarray, nambu: bool, method: str) -> np.ndarray:
        if not nambu and self.has_squeezing:
            raise ValueError(
                "nambu=False is only allowed for networks without squeezing: a squeezing "
                "coupling mixes a and a†, so use the doubled basis (nambu=True)"
            )
        if self.has_squeezing:
            A = self.dynamical_matrix(nambu=True)
            Bn = np.block([[B, np.zeros_like(B)], [np.zeros_like(B), B]])
            return response(A, Bn, w, method)
        A = self.dynamical_matrix(nambu=False)
        if not nambu:
            return response(A, B, w, method)
        # No squeezing: the blocks decouple and the conjugate block is S*(-w).
        both = response(A, B, np.concatenate([w, -w]), method)
        S, Sm = both[: w.size], both[w.size :]
        p = B.shape[1]
        out = np.zeros((w.size, 2 * p, 2 * p), dtype=complex)
        out[:, :p, :p] = S
        out[:, p:, p:] = np.conj(Sm)
        return out

    def full_scattering(
        self, offset: float | Iterable[float] | np.ndarray, allow_unstable: bool = False
    ) -> np.ndarray:
        """Doubled-basis scattering between all channels (ports and internal baths).

        Channel order is :attr:`channels`, then their conjugates. Shape
        ``(..., 2C, 2C)``. Used for noise.
        """
        w = finite_array(offset, "scattering offset")
        self._check_stable(allow_unstable)
        B, _ = self._input_matrix(internal=True)
        if B.shape[1] == 0:
            raise ValueError("the network has no ports and no internal loss")
        S = self._scatter(B, w.reshape(-1), True, "auto")
        return S.reshape(w.shape + S.shape[-2:])

    # ------------------------------------------------------------------ noise
    def output_noise(
        self, offset: float | np.ndarray, thermal_occupation: float | dict[str, float] = 0.0
    ) -> np.ndarray:
        """Output occupation of every port; see :func:`labnr.model.noise.output_noise`."""
        from labnr.model.noise import output_noise

        return output_noise(self, offset, thermal_occupation)

    def added_noise(
        self,
        out: str,
        in_: str,
        offset: float | np.ndarray,
        thermal_occupation: float | dict[str, float] = 0.0,
        in_conjugate: bool | None = None,
    ) -> np.ndarray:
        """Added noise (quanta, input-referred); see :func:`labnr.model.noise.added_noise`."""
        from labnr.model.noise import added_noise

        return added_noise(self, out, in_, offset, thermal_occupation, in_conjugate)
