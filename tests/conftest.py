"""Shared fixtures: a virtual lab served in-process on ephemeral loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def virtual_lab(request: pytest.FixtureRequest) -> Iterator[object]:
    """A started :class:`labnr.sim.VirtualLab` (JPC circulator, seed 1), stopped afterwards.

    Parametrise indirectly to choose the device:
    ``@pytest.mark.parametrize("virtual_lab", ["em_circulator"], indirect=True)``.
    """
    from labnr.sim.lab import VirtualLab

    device = getattr(request, "param", "jpc_circulator")
    lab = VirtualLab(device, seed=1)
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()
