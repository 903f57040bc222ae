"""The pure S-matrix plan: receiver maps along the pump graph, plain groups, checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labnr.measure.plan import (
    PumpEdge,
    ReceiverMap,
    nominal_pump_frequency,
    plan_smatrix,
    receiver_map,
)

JPC = {"a": 5.31e9, "b": 6.47e9, "c": 7.905e9}
EM = {"a1": 5.21e9, "a2": 6.065e9, "m1": 5.83e6, "m2": 6.41e6}


def conv(tone: str, x: str, y: str, modes: dict[str, float], detune: float = 0.0) -> PumpEdge:
    return PumpEdge(tone, (x, y), "conversion", abs(modes[x] - modes[y]) + detune)


def jpc_edges(detune: float = 0.0) -> list[PumpEdge]:
    return [
        conv("ab", "a", "b", JPC, detune),
        conv("bc", "b", "c", JPC),
        conv("ca", "c", "a", JPC, detune),
    ]


def test_conversion_moves_up_to_the_higher_mode_and_down_back() -> None:
    edges = jpc_edges()
    up = receiver_map("a", "b", JPC, edges)
    down = receiver_map("b", "a", JPC, edges)
    assert up == ReceiverMap(1, JPC["b"] - JPC["a"], (("ab", 1),))
    assert down == ReceiverMap(1, JPC["a"] - JPC["b"], (("ab", -1),))
    # the tone's order in the config (c, a) does not matter, only which mode is higher
    assert receiver_map("a", "c", JPC, edges) == ReceiverMap(1, JPC["c"] - JPC["a"], (("ca", 1),))
    assert receiver_map("a", "a", JPC, edges) == ReceiverMap()


def test_offsets_follow_the_pump_frequencies_not_the_modes() -> None:
    # a detuned pump converts by its own frequency: the receivers follow it
    edges = jpc_edges(detune=3e6)
    assert receiver_map("a", "b", JPC, edges).offset == pytest.approx(JPC["b"] - JPC["a"] + 3e6)
    assert receiver_map("c", "a", JPC, edges).offset == pytest.approx(JPC["a"] - JPC["c"] - 3e6)


def test_path_through_unported_modes_composes_the_tones() -> None:
    # a1 -> m1 (down by p11) -> a2 (up by p21): the electromechanical transmission
    edges = [
        conv("p11", "a1", "m1", EM),
        conv("p12", "a1", "m2", EM),
        conv("p21", "a2", "m1", EM),
        conv("p22", "a2", "m2", EM),
    ]
    m = receiver_map("a1", "a2", EM, edges)
    assert m is not None and m.multiplier == 1
    assert m.offset == pytest.approx(EM["a2"] - EM["a1"])
    assert m.path == (("p11", -1), ("p21", 1))


def test_gain_flips_the_receiver_sweep() -> None:
    modes = {"s": 5e9, "i": 7e9, "x": 8e9}
    pump = nominal_pump_frequency("gain", modes["s"], modes["i"])
    edges = [
        PumpEdge("g", ("s", "i"), "gain", pump),
        PumpEdge("c", ("i", "x"), "conversion", 1e9),
    ]
    idler = receiver_map("s", "i", modes, edges)
    assert idler == ReceiverMap(-1, pump, (("g", 1),))
    # s at f_s + d comes out of i at f_p - f_s - d = f_i - d
    assert idler.multiplier * (modes["s"] + 1e6) + idler.offset == pytest.approx(modes["i"] - 1e6)
    onward = receiver_map("s", "x", modes, edges)
    assert onward is not None and onward.multiplier == -1
    assert onward.multiplier * modes["s"] + onward.offset == pytest.approx(modes["x"])


def test_unconnected_modes() -> None:
    assert receiver_map("a", "b", JPC, []) is None
    with pytest.raises(KeyError, match="unknown mode"):
        receiver_map("a", "z", JPC, [])


@given(
    freqs=st.lists(st.floats(1e6, 20e9), min_size=2, max_size=6, unique=True),
    parents=st.lists(st.integers(0, 100), min_size=5, max_size=5),
)
def test_resonant_tree_of_conversions_maps_every_mode_onto_every_other(
    freqs: list[float], parents: list[int]
) -> None:
    modes = {f"m{k}": f for k, f in enumerate(freqs)}
    names = list(modes)
    edges = [
        conv(f"t{k}", names[k], names[parents[k - 1] % k], modes) for k in range(1, len(names))
    ]
    for i in names:
        for o in names:
            m = receiver_map(i, o, modes, edges)
            assert m is not None and m.multiplier == 1
            assert m.offset == pytest.approx(modes[o] - modes[i], abs=1e-3)


def test_full_plan_of_the_jpc() -> None:
    plan = plan_smatrix(list(JPC), JPC, JPC, jpc_edges(), 150e6, 401)
    assert plan.ports == ("a", "b", "c") and plan.groups == ()
    assert len(plan.elements) == 9 and plan.elements[1] == ("a", "b")
    assert all(plan.maps[(m, m)].is_identity for m in JPC)
    assert plan.maps[("c", "b")].offset == pytest.approx(JPC["c"] - JPC["b"])
    assert plan.stimulus_range(("c", "b")) == (JPC["b"] - 75e6, JPC["b"] + 75e6)
    assert plan.receiver_range(("c", "b")) == pytest.approx((JPC["c"] - 75e6, JPC["c"] + 75e6))


def test_centres_move_the_bands_but_not_the_pump_offsets() -> None:
    centres = {**JPC, "a": JPC["a"] + 2e6}
    plan = plan_smatrix(list(JPC), centres, JPC, jpc_edges(), 150e6, 11)
    assert plan.centres["a"] == JPC["a"] + 2e6
    assert plan.maps[("b", "a")].offset == pytest.approx(JPC["b"] - JPC["a"])


def test_unconnected_ports_far_apart_listen_at_the_output_band() -> None:
    plan = plan_smatrix(list(JPC), JPC, JPC, [], 150e6, 11)
    assert plan.groups == ()
    assert plan.maps[("b", "a")] == ReceiverMap(1, JPC["b"] - JPC["a"])


def test_unconnected_ports_sharing_a_band_form_a_plain_group() -> None:
    modes = {"p": 6.000e9, "q": 6.010e9, "r": 6.020e9, "s": 8e9}
    plan = plan_smatrix(list(modes), modes, modes, [], 50e6, 11)
    assert plan.groups == (("p", "q", "r"),)
    assert plan.centres["p"] == plan.centres["r"] == pytest.approx(6.010e9)
    assert plan.maps[("q", "p")].is_identity and plan.maps[("p", "p")].is_identity
    assert plan.maps[("s", "p")].offset == pytest.approx(8e9 - 6.010e9)
    # p~q and q~r but p and r too far apart: two groups, q with p
    plan = plan_smatrix(["p", "q", "r"], modes, modes, [], 15e6, 11)
    assert plan.groups == (("p", "q"),)
    assert plan.maps[("r", "q")].is_identity  # measured alone, at one frequency
    assert plan.centres["r"] == modes["r"]


def test_without_frequency_offset_everything_is_one_sweep() -> None:
    plan = plan_smatrix(list(JPC), JPC, JPC, jpc_edges(), 150e6, 11, frequency_offset=False)
    assert plan.groups == (("a", "b", "c"),)
    assert all(m.is_identity for m in plan.maps.values())
    assert len(set(plan.centres.values())) == 1


def test_paths_restrict_the_elements() -> None:
    plan = plan_smatrix(list(JPC), JPC, JPC, jpc_edges(), 1e6, 11, paths=[("b", "a"), ("a", "a")])
    assert plan.elements == (("b", "a"), ("a", "a")) and set(plan.maps) == set(plan.elements)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"paths": [("b", "z")]}, "paths"),
        ({"paths": [("b", "a"), ("b", "a")]}, "paths"),
        ({"span": 0.0}, "span"),
        ({"points": 0}, "points"),
    ],
)
def test_bad_plans_are_refused(kwargs: dict, match: str) -> None:
    args = {"span": 1e6, "points": 11, **kwargs}
    span, points = args.pop("span"), args.pop("points")
    with pytest.raises(ValueError, match=match):
        plan_smatrix(list(JPC), JPC, JPC, [], span, points, **args)


def test_nominal_pump_frequency() -> None:
    assert nominal_pump_frequency("conversion", 5e9, 6e9) == 1e9
    assert nominal_pump_frequency("gain", 5e9, 6e9) == 11e9
    with pytest.raises(ValueError, match="kind"):
        nominal_pump_frequency("squeeze", 1.0, 2.0)
