"""Stimulus power limits of the PNA-X driver: no power above a port's limit is ever sent.

Against pyvisa-sim (every refusal happens before anything is written; the
simulated analyzer's ports start at 0 dBm).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from qcodes.instrument import Instrument

from labnr.drivers.keysight_pna import PYVISA_SIM_FILE, KeysightN5222B, KeysightN5242B
from labnr.drivers.keysight_pna_params import PNA_MODEL_LIMITS

SIM_ADDRESS = "TCPIP0::127.0.0.1::hislip0::INSTR"
N5222B_ADDRESS = "TCPIP0::127.0.0.2::hislip0::INSTR"  # answers *IDN? as an N5222B


@pytest.fixture
def vna(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[KeysightN5242B, list[str]]]:
    """The simulated analyzer and the list of every command (not query) sent from now on."""
    instrument = KeysightN5242B("pna_limit", SIM_ADDRESS, pyvisa_sim_file=PYVISA_SIM_FILE)
    sent: list[str] = []
    original = instrument.visa_handle.write

    def write(message: str, *args: object, **kwargs: object) -> object:
        if "?" not in message:
            sent.append(message)
        return original(message, *args, **kwargs)

    monkeypatch.setattr(instrument.visa_handle, "write", write)
    try:
        yield instrument, sent
    finally:
        Instrument.close_all()


def test_limit_lowers_a_present_power_above_it(vna: tuple[KeysightN5242B, list[str]]) -> None:
    pna, sent = vna
    assert pna.port1.power() == 0.0 and pna.port1.max_power == 20.0
    assert pna.limit_power(1, -10.0) == -10.0  # read back after lowering
    assert "SOUR1:POW1 -10.0" in sent
    assert pna.port1.max_power == -10.0 and pna.port2.max_power == 20.0  # per port
    sent.clear()
    assert pna.limit_power(2, 5.0) == 0.0  # below the new limit already: nothing written
    assert not [m for m in sent if "POW2 " in m]


def test_no_write_above_the_limit(vna: tuple[KeysightN5242B, list[str]]) -> None:
    pna, sent = vna
    pna.limit_power(1, -10.0)
    sent.clear()
    with pytest.raises(ValueError, match=r"KeysightN5242B 'pna_limit'.*-5.0 dBm.*port 1's "
                       r"stimulus limit -10 dBm"):  # fmt: skip
        pna.port1.power(-5.0)
    with pytest.raises(ValueError, match=r"port 1's stimulus limit -10 dBm"):
        pna.point([(2, 1)], 5e9, power=-5.0)  # an explicit power of a point read
    assert sent == []
    pna.visa_handle.write("SOUR1:POW1 0")  # changed behind the driver (the front panel) ...
    pna.port1.power.cache.invalidate()
    sent.clear()
    with pytest.raises(ValueError, match=r"0.0 dBm is outside \[-90.0, -10.0\] dBm"):
        pna.point([(2, 1)], 5e9)  # ... so the power a read would inherit is refused
    assert sent == []
    pna.port1.power(-10.0)  # at the limit is allowed
    assert "SOUR1:POW1 -10.0" in sent


@pytest.mark.parametrize(
    ("port", "limit", "match"),
    [
        (1, 25.0, r"source range \[-90, 20\] dBm"),
        (1, float("nan"), "source range"),
        (5, -10.0, "port 5 is not one of 1..4"),
        (True, -10.0, "port True is not one of"),
    ],
)
def test_bad_limits_are_refused(
    vna: tuple[KeysightN5242B, list[str]], port: int, limit: float, match: str
) -> None:
    pna, sent = vna
    with pytest.raises(ValueError, match=match):
        pna.limit_power(port, limit)
    assert pna.port1.max_power == 20.0 and sent == []


def test_limits_are_only_lowered(vna: tuple[KeysightN5242B, list[str]]) -> None:
    pna, _ = vna
    pna.limit_power(3, -20.0)
    with pytest.raises(ValueError, match=r"only lowered.*-20 dBm"):
        pna.limit_power(3, -10.0)
    assert pna.port3.max_power == -20.0


def test_model_limits_table_matches_the_model_classes() -> None:
    # labnr.config checks configs against PNA_MODEL_LIMITS: it must be what the classes use
    try:
        for cls, address in ((KeysightN5242B, SIM_ADDRESS), (KeysightN5222B, N5222B_ADDRESS)):
            pna = cls(f"table_{cls.__name__}", address, pyvisa_sim_file=PYVISA_SIM_FILE)
            assert pna.limits == PNA_MODEL_LIMITS[cls.__name__]
    finally:
        Instrument.close_all()
