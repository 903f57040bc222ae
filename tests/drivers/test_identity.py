"""Know your instrument before you write to it (labnr.drivers.identity, visa_guard).

Every labnr driver is pointed at the wrong emulated instrument of the virtual
lab: it must refuse with one line naming the instrument, the address, the
answer and what was expected, send nothing but ``*IDN?`` (the emulator
records every message it receives; the GS200's output stays on at its level)
and release its VISA handle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pyvisa
import pyvisa.errors
import qcodes as qc
from qcodes.instrument import Instrument, VisaInstrument
from qcodes.instrument_drivers.rohde_schwarz import RohdeSchwarzSGS100A as QCoDeSSGS100A

from labnr.drivers.flux_gs200 import GS200FluxBias
from labnr.drivers.identity import (
    AWG5208,
    GS200_FAMILY,
    PNA_FAMILY,
    SGS100A,
    IdentityError,
    confirm_loaded,
    parse_idn,
    serial_matches,
)
from labnr.drivers.keysight_pna import KeysightN5242B, KeysightPNAXBase
from labnr.drivers.sgs100a import RohdeSchwarzSGS100A
from labnr.drivers.tektronix_awg5208 import TektronixAWG5208Direct

CONNECT = {"terminator": "\n", "visalib": "@py", "device_clear": False, "timeout": 5}
FLUX = {
    "current_per_flux_quantum": 1e-3,
    "current_limits": [-1e-3, 1e-3],
    "ramp_rate": 1e-4,
    "max_step": 1e-5,
}
LEVEL = 136e-6


@pytest.fixture(autouse=True)
def _close_all() -> Iterator[None]:
    yield
    Instrument.close_all()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every VISA resource a driver opens (to check it was released)."""
    handles: list[Any] = []
    original = VisaInstrument._open_resource

    def recording(self: VisaInstrument, address: str, visalib: str | None) -> Any:
        handle = original(self, address, visalib)
        handles.append(handle)
        return handle

    monkeypatch.setattr(VisaInstrument, "_open_resource", recording)
    return handles


def record_messages(lab: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every message the emulator ``name`` receives over the wire."""
    emulator = lab.instruments[name]
    received: list[str] = []
    original = emulator.process

    def process(message: bytes | str) -> bytes | None:
        text = message.decode() if isinstance(message, bytes) else message
        received.append(text.strip())
        return original(message)

    monkeypatch.setattr(emulator, "process", process)
    return received


def flux_on(lab: Any) -> Any:
    """Put the emulated GS200 in current mode with its output on at LEVEL."""
    gs = lab.flux_source
    gs.write(f":SOUR:FUNC CURR;:SOUR:RANG 1E-3;:SOUR:LEV {LEVEL:.6E};:OUTP 1")
    assert (gs.state.function, gs.state.level, gs.state.output) == ("CURR", LEVEL, True)
    return gs


def connect_sgs(address: str, **kw: Any) -> Any:
    return RohdeSchwarzSGS100A("pump_ab", address, **CONNECT, **kw)


def connect_pna(address: str, **kw: Any) -> Any:
    return KeysightN5242B("vna", address, **CONNECT, **kw)


def connect_awg(address: str, **kw: Any) -> Any:
    return TektronixAWG5208Direct("awg", address, **CONNECT, **kw)


def connect_flux(address: str, **kw: Any) -> Any:
    init = {k: v for k, v in CONNECT.items() if k != "device_clear"}
    return GS200FluxBias("flux", address, **init, **FLUX, **kw)


# ------------------------------------------------------------------ pure parts


def test_parse_idn_and_serials() -> None:
    idn = parse_idn(" Rohde&Schwarz,SGS100A,1416.0505k02/110787,4.2.76.0-4.30.046.295\n")
    assert idn == {
        "vendor": "Rohde&Schwarz",
        "model": "SGS100A",
        "serial": "1416.0505k02/110787",
        "firmware": "4.2.76.0-4.30.046.295",
    }
    assert parse_idn("LABNR")["model"] is None and parse_idn("")["vendor"] is None
    assert serial_matches("110787", idn["serial"]) and serial_matches(idn["serial"], idn["serial"])
    assert not serial_matches("110788", idn["serial"]) and not serial_matches("", idn["serial"])


@pytest.mark.parametrize(
    ("reply", "spec", "ok"),
    [
        ("Keysight Technologies,N5242B,MY59100001,A.15.20.07", PNA_FAMILY, True),
        ("Agilent Technologies,N5230C,MY49001234,A.09.90.02", PNA_FAMILY, True),
        ("Keysight Technologies,P5024B,MY62000001,A.16.20.06", PNA_FAMILY, True),
        ("Keysight Technologies,E5080B,MY61000001,A.16.20.06", PNA_FAMILY, False),
        ("ROHDE&SCHWARZ,SGS100A,1416.0505k02/110787,4.2.76.0", SGS100A, True),
        ("Rohde&Schwarz,SMB100A,1406.6000k02/100001,3.1.19.15", SGS100A, False),
        ("YOKOGAWA,GS211,91W000001,2.02", GS200_FAMILY, True),
        ("YOKOGAWA,GS610,91W000001,2.02", GS200_FAMILY, False),
        ("TEKTRONIX,AWG5208,B010101,FV:6.6.0052.0", AWG5208, True),
        ("TEKTRONIX,AWG5204,B010101,FV:6.6.0052.0", AWG5208, False),
        ("QCoDeS, SGS100A_simulated, simulated, 0.0.1", SGS100A, False),
    ],
)
def test_families(reply: str, spec: Any, ok: bool) -> None:
    assert spec.matches(parse_idn(reply)) is ok


# ------------------------------------------------------------------ drivers vs the virtual lab


WRONG: list[tuple[str, Callable[..., Any], str, str]] = [
    ("SGS100A at the GS200", connect_sgs, "flux", "expected a Rohde&Schwarz SGS100A"),
    ("PNA at an SGS100A", connect_pna, "pump_ab", "expected a Keysight PNA-X N5242A/B"),
    ("flux bias at the VNA", connect_flux, "vna", "expected a Yokogawa GS200"),
    ("AWG at the GS200", connect_awg, "flux", "expected a Tektronix AWG5208"),
    ("SGS100A at the AWG", connect_sgs, "awg", "expected a Rohde&Schwarz SGS100A"),
]


@pytest.mark.parametrize(
    ("case", "connect", "target", "expected"), WRONG, ids=[w[0] for w in WRONG]
)
def test_driver_refuses_a_wrong_instrument(
    virtual_lab: Any,
    monkeypatch: pytest.MonkeyPatch,
    opened: list[Any],
    case: str,
    connect: Callable[..., Any],
    target: str,
    expected: str,
) -> None:
    gs = flux_on(virtual_lab)
    received = record_messages(virtual_lab, target, monkeypatch)
    address = virtual_lab.addresses[target]
    with pytest.raises(IdentityError) as info:
        connect(address)
    message = str(info.value)
    answer = virtual_lab.instruments[target].idn
    assert "\n" not in message
    assert address in message and repr(answer) in message and expected in message
    assert "nothing was written to it" in message and "station file" in message
    # nothing but the identity query reached the wrong instrument
    assert received == ["*IDN?"]
    assert (gs.state.function, gs.state.level, gs.state.output) == ("CURR", LEVEL, True)
    # the VISA handle is released and the name is free again
    assert opened
    for handle in opened:
        with pytest.raises(pyvisa.errors.InvalidSession):
            handle.session  # noqa: B018
    assert not Instrument.instances()


def test_right_instruments_connect_and_serials_are_checked(
    virtual_lab: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = virtual_lab.addresses
    sgs = connect_sgs(addresses["pump_ab"], serial="000001")  # the part after the '/'
    assert sgs.identity_confirmed and sgs.confirmed_idn["model"] == "SGS100A"
    vna = connect_pna(addresses["vna"], serial="MY59100001")
    awg = connect_awg(addresses["awg"])
    flux = connect_flux(addresses["flux"], serial="91W000001")
    assert vna.confirmed_idn["serial"] == "MY59100001" and awg.identity_confirmed
    assert flux.source.instrument.confirmed_idn["model"] == "GS210"
    gs = flux_on(virtual_lab)
    received = record_messages(virtual_lab, "flux", monkeypatch)
    flux.close()
    with pytest.raises(IdentityError, match=r"expected serial '91W999999'.*nothing was written"):
        connect_flux(addresses["flux"], serial="91W999999")
    assert received == ["*IDN?"]
    assert (gs.state.level, gs.state.output) == (LEVEL, True)


def test_model_classes_narrow_the_family(virtual_lab: Any) -> None:
    """The base class takes any PNA; a model class only its model (its limits differ)."""
    address = virtual_lab.addresses["vna"]

    class N5245B(KeysightPNAXBase):
        identity = KeysightPNAXBase.identity.__class__(
            KeysightPNAXBase.identity.vendors, (r"N5245B",), "a Keysight PNA-X N5245B"
        )

    with pytest.raises(IdentityError, match="expected a Keysight PNA-X N5245B.*another model"):
        N5245B("vna", address, min_frequency=10e6, max_frequency=50e9, n_ports=4,
               min_power=-90, max_power=13, **CONNECT)  # fmt: skip
    base = KeysightPNAXBase("vna", address, min_frequency=10e6, max_frequency=26.5e9,
                            n_ports=4, min_power=-90, max_power=20, **CONNECT)  # fmt: skip
    assert base.confirmed_idn["model"] == "N5242B"


def test_unconfirmed_identity_refuses_writes(virtual_lab: Any) -> None:
    gs = flux_on(virtual_lab)
    flux = connect_flux(virtual_lab.addresses["flux"])
    source = flux.source.instrument
    source._labnr_guard.confirmed = False  # as before its identity check
    with pytest.raises(IdentityError, match="write 'OUTPUT 0' refused.*not confirmed; it was not"):
        source.off()
    with pytest.raises(IdentityError, match="query"):
        source.ask_raw(":SOUR:LEV?")
    assert (gs.state.level, gs.state.output) == (LEVEL, True)


# ------------------------------------------------------------------ confirm_loaded


def test_confirm_loaded_checks_plain_qcodes_classes_and_roles(virtual_lab: Any) -> None:
    addresses = virtual_lab.addresses
    pump = QCoDeSSGS100A("pump_ab", addresses["pump_ab"], **CONNECT)
    assert confirm_loaded(pump, "pump source")["model"] == "SGS100A"
    assert confirm_loaded(pump, "lo", serial="000001")["serial"].endswith("/000001")
    with pytest.raises(IdentityError, match="expected serial '000002'.*closed"):
        confirm_loaded(pump, "pump source", serial="000002")
    assert not Instrument.exist("pump_ab")

    wrong = QCoDeSSGS100A("pump_bc", addresses["flux"], **CONNECT)  # a GS200 answers
    with pytest.raises(
        IdentityError, match=r"expected a Rohde&Schwarz SGS100A.*role 'pump source'"
    ):
        confirm_loaded(wrong, "pump source")
    assert not Instrument.exist("pump_bc")

    vna = connect_pna(addresses["vna"])
    with pytest.raises(IdentityError, match="expected a CW microwave source"):
        confirm_loaded(vna, "pump source")
    flux = connect_flux(addresses["flux"])
    assert confirm_loaded(flux, "flux source")["vendor"] == "YOKOGAWA"
    with pytest.raises(ValueError, match="role='pump'; allowed: vna, pump source"):
        confirm_loaded(flux, "pump")


def test_station_files_use_the_checked_sgs100a() -> None:
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "configs"
    for name in ("station_sim.yaml", "station_sim_em.yaml", "station_example_lab.yaml"):
        entries = yaml.safe_load((root / name).read_text())["instruments"]
        types = {e["type"] for e in entries.values()}
        assert "qcodes.instrument_drivers.rohde_schwarz.RohdeSchwarzSGS100A" not in types, name
        assert "labnr.drivers.sgs100a.RohdeSchwarzSGS100A" in types, name
    assert qc.Station  # the station class loads these types by dotted name
