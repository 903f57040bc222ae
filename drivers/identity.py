"""Know your instrument before you write to it: ``*IDN?`` checks.

Every labnr driver asks the instrument who it is (a fresh ``*IDN?``, never
QCoDeS's cached ``IDN``) right after the VISA connection opens and before
anything is written (:class:`labnr.drivers.visa_guard.GuardedVisaInstrument`).
A wrong vendor or model family, or a serial other than the one the station
file gives (init keyword ``serial:``), is refused with one line::

    instrument 'pump_ab' at TCPIP::127.0.0.1::5025::SOCKET answers *IDN?
    'YOKOGAWA,GS210,91W000001,2.02': expected a Rohde&Schwarz SGS100A; nothing
    was written to it (check the address in the station file)

and the connection is closed. Instruments that are plain QCoDeS classes (no
labnr guard) are checked after loading with :func:`confirm_loaded`, which
knows the QCoDeS classes labnr uses and the instrument families each *role*
(``"vna"``, ``"pump source"``, ``"flux source"``, ``"awg"``, ``"lo"``)
accepts; a mismatch closes the instrument, so nothing further reaches it.

Matching is on the first two ``*IDN?`` fields (vendor, model) with
case-insensitive regular expressions (full match), and on the third (serial)
when one is expected: equal, or equal to its last ``/``-separated part
(Rohde & Schwarz answer ``1416.0505k02/110787``; the station may give
``110787``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AWG52XX",
    "AWG5208",
    "CLASS_IDENTITIES",
    "CW_SOURCES",
    "GS200_FAMILY",
    "IDN_QUERY",
    "KEYSIGHT_VENDORS",
    "PNA_FAMILY",
    "ROLE_IDENTITIES",
    "SGS100A",
    "Identity",
    "IdentityError",
    "confirm_identity",
    "confirm_loaded",
    "idn_matches",
    "parse_idn",
    "serial_matches",
]

#: The IEEE 488.2 identification query.
IDN_QUERY = "*IDN?"

#: What the refusal says about writes, for a labnr driver (checked before any write).
NOTHING_WRITTEN = "nothing was written to it"


class IdentityError(RuntimeError):
    """The instrument at an address is not the one the station file says (one line).

    Not a transient fault: the resilience layer never retries it.
    """

    transient = False


@dataclass(frozen=True)
class Identity:
    """What an instrument must answer to ``*IDN?``.

    Attributes
    ----------
    vendors : tuple of str
        Regular expressions, one of which must fully match the vendor field
        (case-insensitive).
    models : tuple of str
        Regular expressions, one of which must fully match the model field
        (case-insensitive).
    description : str
        For messages: "a Rohde&Schwarz SGS100A".
    """

    vendors: tuple[str, ...]
    models: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        if not self.vendors or not self.models:
            raise ValueError(f"Identity {self.description!r}: needs vendors and models")
        for pattern in (*self.vendors, *self.models):
            re.compile(pattern)

    def matches(self, idn: Mapping[str, str | None]) -> bool:
        """Whether the parsed ``*IDN?`` fields (:func:`parse_idn`) match vendor and model."""
        vendor, model = idn.get("vendor") or "", idn.get("model") or ""
        return _any_full(self.vendors, vendor) and _any_full(self.models, model)

    def vendor_matches(self, idn: Mapping[str, str | None]) -> bool:
        """Whether only the vendor matches."""
        return _any_full(self.vendors, idn.get("vendor") or "")


def _any_full(patterns: tuple[str, ...], text: str) -> bool:
    return any(re.fullmatch(p, text.strip(), re.IGNORECASE) for p in patterns)


#: Vendor fields of Keysight (and, before 2014, Agilent) instruments.
KEYSIGHT_VENDORS = (r"Keysight(\s+Technologies)?(,?\s*Inc\.?)?", r"Agilent(\s+Technologies)?")
_KEYSIGHT = KEYSIGHT_VENDORS
_RS = (r"Rohde\s*&\s*Schwarz", r"Rohde\s*and\s*Schwarz", r"R\s*&\s*S")

#: Keysight/Agilent PNA, PNA-L, PNA-X (N52xx) and Streamline USB VNAs (P50xx).
PNA_FAMILY = Identity(
    _KEYSIGHT, (r"N52\d\d[A-Z]?", r"P50\d\d[A-Z]?"), "a Keysight PNA (N52xx/P50xx)"
)
#: Rohde & Schwarz SGS100A SGMA RF source.
SGS100A = Identity(_RS, (r"SGS100A",), "a Rohde&Schwarz SGS100A")
#: Yokogawa GS200 family (GS210, GS211).
GS200_FAMILY = Identity((r"YOKOGAWA",), (r"GS2\d\d",), "a Yokogawa GS200 (GS2xx)")
#: Tektronix AWG5208 (eight channels, as TektronixAWG5208Direct assumes).
AWG5208 = Identity((r"TEKTRONIX",), (r"AWG5208",), "a Tektronix AWG5208")
#: Tektronix AWG5200 series (AWG5202, AWG5204, AWG5208).
AWG52XX = Identity((r"TEKTRONIX",), (r"AWG52\d\d",), "a Tektronix AWG52xx")
#: CW microwave generators a pump tone may come from: R&S SGS/SMB/SMA/SMF, Keysight PSG/MXG/EXG.
CW_SOURCES = Identity(
    (*_RS, *_KEYSIGHT),
    (r"SGS100A", r"SMB100[AB]", r"SMA100[AB]", r"SMF100A", r"E82\d7[CD]", r"N51[78]3[AB]"),
    "a CW microwave source (R&S SGS100A/SMB100/SMA100/SMF100, Keysight PSG/MXG/EXG)",
)

#: Expected identity of the QCoDeS (and labnr) classes labnr loads, by class name
#: (matched along the instance's MRO, most derived first).
CLASS_IDENTITIES: dict[str, Identity] = {
    "RohdeSchwarzSGS100A": SGS100A,
    "RohdeSchwarz_SGS100A": SGS100A,
    "YokogawaGS200": GS200_FAMILY,
    "GS200": GS200_FAMILY,
    "TektronixAWG5208": AWG52XX,
    "TektronixAWG5204": AWG52XX,
    "TektronixAWG5200": AWG52XX,
    "KeysightPNABase": PNA_FAMILY,
    "KeysightPNAXBase": PNA_FAMILY,
}

#: The families each role accepts (any one of them).
ROLE_IDENTITIES: dict[str, tuple[Identity, ...]] = {
    "vna": (PNA_FAMILY,),
    "pump source": (CW_SOURCES, AWG52XX),
    "lo": (CW_SOURCES,),
    "awg": (AWG52XX,),
    "flux source": (GS200_FAMILY,),
}


def parse_idn(reply: str) -> dict[str, str | None]:
    """The four fields of an ``*IDN?`` reply.

    Parameters
    ----------
    reply : str
        E.g. ``"Keysight Technologies,N5242B,MY59100001,A.15.20.07"``.

    Returns
    -------
    dict
        ``vendor``, ``model``, ``serial``, ``firmware`` (stripped; None where
        the reply has fewer fields). Fields beyond the fourth stay in
        ``firmware``.
    """
    text = str(reply).strip()
    parts = [p.strip() for p in text.split(",", 3)] if text else []
    parts += [None] * (4 - len(parts))  # type: ignore[list-item]
    keys = ("vendor", "model", "serial", "firmware")
    return {k: (v or None) for k, v in zip(keys, parts, strict=True)}


def serial_matches(expected: str, answered: str | None) -> bool:
    """Whether an answered serial is the expected one (see the module doc)."""
    want = str(expected).strip().lower()
    got = (answered or "").strip().lower()
    return bool(want) and (got == want or got.rsplit("/", 1)[-1] == want)


def idn_matches(idn: Mapping[str, str | None], expected: Identity | tuple[Identity, ...]) -> bool:
    """Whether the fields match ``expected`` (or any of several identities)."""
    specs = expected if isinstance(expected, tuple) else (expected,)
    return any(spec.matches(idn) for spec in specs)


def _where(instrument: Any, address: str | None) -> str:
    if address is None:
        address = getattr(instrument, "labnr_address", None)
    if address is None:
        try:
            address = instrument.visa_handle.resource_name
        except Exception:  # closed or not a VISA instrument
            address = "?"
    return f"instrument {getattr(instrument, 'name', instrument)!r} at {address}"


def _described(expected: Identity | tuple[Identity, ...]) -> str:
    specs = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(spec.description for spec in specs)


def _shown(reply: str) -> str:
    text = " ".join(str(reply).split())
    return repr(text if len(text) <= 100 else text[:100] + "...")


def check_idn(
    reply: str,
    where: str,
    expected: Identity | tuple[Identity, ...],
    *,
    serial: str | None = None,
    written: str = NOTHING_WRITTEN,
) -> dict[str, str | None]:
    """Check an ``*IDN?`` reply; return its fields or raise :class:`IdentityError`.

    Parameters
    ----------
    reply : str
        The reply.
    where : str
        "instrument 'pump_ab' at <address>", for the message.
    expected : Identity or tuple of Identity
        Accepted identities.
    serial : str, optional
        Expected serial number.
    written : str
        What the message says was written to it.
    """
    idn = parse_idn(reply)
    hint = "check the address in the station file"
    if not idn_matches(idn, expected):
        specs = expected if isinstance(expected, tuple) else (expected,)
        if any(s.vendor_matches(idn) for s in specs) and idn["model"]:
            hint = "another model: use its class, or check the address in the station file"
        raise IdentityError(
            f"{where} answers *IDN? {_shown(reply)}: expected {_described(expected)}; "
            f"{written} ({hint})"
        )
    if serial is not None and not serial_matches(serial, idn["serial"]):
        raise IdentityError(
            f"{where} answers *IDN? {_shown(reply)}: expected serial {str(serial)!r} "
            f"(init 'serial' in the station file); {written} (check the address or the serial)"
        )
    return idn


def confirm_identity(
    instrument: Any,
    expected: Identity | tuple[Identity, ...],
    *,
    serial: str | None = None,
    address: str | None = None,
    written: str = NOTHING_WRITTEN,
) -> dict[str, str | None]:
    """Query ``*IDN?`` afresh and check it against ``expected`` (and ``serial``).

    Parameters
    ----------
    instrument : qcodes VisaInstrument
        Connected; its ``ask_raw`` sends the query.
    expected : Identity or tuple of Identity
        Accepted identities.
    serial : str, optional
        Expected serial (station init keyword ``serial``).
    address : str, optional
        For the message (default: the instrument's ``labnr_address`` or VISA resource).
    written : str
        What the message says was written to it.

    Returns
    -------
    dict
        The parsed reply (:func:`parse_idn`) plus ``"reply"``, the raw reply.

    Raises
    ------
    IdentityError
        On no answer, a wrong vendor/model or a wrong serial (one line). The
        caller closes the instrument.
    """
    where = _where(instrument, address)
    try:
        reply = str(instrument.ask_raw(IDN_QUERY))
    except IdentityError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:160]
        raise IdentityError(
            f"{where} does not answer *IDN? ({type(exc).__name__}: {text}): expected "
            f"{_described(expected)}; {written} (check the address in the station file)"
        ) from exc
    fields: dict[str, Any] = dict(check_idn(reply, where, expected, serial=serial, written=written))
    fields["reply"] = reply.strip()
    return fields


def expected_for_class(instrument: Any) -> Identity | None:
    """The identity a labnr or QCoDeS class expects (its ``identity`` or the table)."""
    spec = getattr(type(instrument), "identity", None)
    if isinstance(spec, Identity):
        return spec
    for cls in type(instrument).__mro__:
        if cls.__name__ in CLASS_IDENTITIES:
            return CLASS_IDENTITIES[cls.__name__]
    return None


def _visa_instrument(instrument: Any) -> Any:
    """The VISA instrument behind a wrapper (a ``GS200FluxBias``'s source)."""
    if hasattr(instrument, "visa_handle"):
        return instrument
    inner = getattr(getattr(instrument, "source", None), "instrument", None)
    return inner if inner is not None and hasattr(inner, "visa_handle") else instrument


def confirm_loaded(instrument: Any, role: str, serial: str | None = None) -> dict[str, Any]:
    """Check a loaded instrument's identity for its ``role``; close it on a mismatch.

    For labnr's guarded drivers the identity was confirmed when they
    connected; this then checks the role (and a serial, if given, afresh).
    Plain QCoDeS classes are checked here: ``*IDN?`` against the class's
    expected identity (:data:`CLASS_IDENTITIES`, if known) and against the
    families the role accepts (:data:`ROLE_IDENTITIES`). On a mismatch the
    instrument is closed, so no further write can reach it.

    Parameters
    ----------
    instrument : qcodes Instrument
        A VISA instrument, or a wrapper with ``source.instrument`` (flux bias).
    role : str
        One of :data:`ROLE_IDENTITIES`.
    serial : str, optional
        Expected serial.

    Returns
    -------
    dict
        The parsed ``*IDN?`` reply (with ``"reply"``).

    Raises
    ------
    ValueError
        For an unknown role.
    IdentityError
        On a mismatch (the instrument is then closed).
    """
    if role not in ROLE_IDENTITIES:
        raise ValueError(f"confirm_loaded: role={role!r}; allowed: {', '.join(ROLE_IDENTITIES)}")
    inner = _visa_instrument(instrument)
    accepted = ROLE_IDENTITIES[role]
    written = "it is closed now, so no further write reaches it"
    try:
        cls_spec = expected_for_class(inner)
        if cls_spec is not None:
            confirm_identity(inner, cls_spec, serial=serial, written=written)
        return confirm_identity(inner, accepted, serial=serial, written=written)
    except IdentityError as exc:
        _close_quietly(instrument)
        raise IdentityError(f"{exc} [role {role!r}]") from None


def _close_quietly(instrument: Any) -> None:
    try:
        instrument.close()
    except Exception:  # already closed or broken: it is unusable either way
        pass
