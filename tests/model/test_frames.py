"""Rotating frames from pump frequencies (labnr.model.frames)."""

import pytest

from labnr.model.frames import PumpLink, assign_frames


def test_conversion_tree_and_loop_mismatch() -> None:
    f = {"a": 5.0e9, "b": 6.0e9, "c": 7.5e9}
    links = [
        PumpLink("a", "b", "conversion", 1.0e9 + 2e3),
        PumpLink("b", "c", "conversion", 1.5e9),
        PumpLink("a", "c", "conversion", 2.5e9),
    ]
    frames, miss = assign_frames(f, links, roots=["a"])
    assert frames["a"] == 5.0e9
    assert frames["b"] == pytest.approx(6.0e9 + 2e3)
    assert frames["c"] == pytest.approx(7.5e9)  # breadth first: c is reached from a directly
    # the loop does not close by 2 kHz; the link left off the tree (b-c) carries it
    assert miss[0] == 0.0 and miss[2] == 0.0
    assert miss[1] == pytest.approx(2e3)


def test_gain_link_and_separate_components() -> None:
    f = {"a": 5.0e9, "b": 7.0e9, "z": 1.0e9}
    frames, miss = assign_frames(f, [PumpLink("a", "b", "gain", 12.0e9 + 1e6)])
    assert frames["a"] + frames["b"] == pytest.approx(12.0e9 + 1e6)
    assert frames["z"] == 1.0e9 and miss == [0.0]


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown mode 'q'"):
        assign_frames({"a": 1.0}, [PumpLink("a", "q", "conversion", 1.0)])
