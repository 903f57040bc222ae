r"""Rotating frames of a pumped mode network, from the pump frequencies.

A pump tone at :math:`f_p` on a conversion link between modes :math:`i` (lower)
and :math:`j` (higher) is static in frames with :math:`F_j = F_i + f_p`; on a
gain link, in frames with :math:`F_i + F_j = f_p`. Along a spanning tree of
the links these rules fix every frame from one root per connected component;
a link that closes a loop whose pump frequencies do not add up is left with a
*mismatch* :math:`\Delta`, and its phase advances as :math:`2\pi\Delta t` in
the frames (conversion; minus that for gain). A mode's detuning in the model
is its frequency minus its frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PumpLink:
    """A pumped link: conversion (``a`` lower, ``b`` higher in frequency) or gain."""

    a: str
    b: str
    kind: str  # "conversion" | "gain"
    pump_frequency: float  # Hz


def frame_of(link: PumpLink, target: str, frame_other: float) -> float:
    """Frame of ``target`` given the frame of the link's other mode."""
    if link.kind == "gain":
        return link.pump_frequency - frame_other
    return (
        frame_other + link.pump_frequency if target == link.b else frame_other - link.pump_frequency
    )


def assign_frames(
    frequencies: Mapping[str, float], links: Sequence[PumpLink], roots: Sequence[str] = ()
) -> tuple[dict[str, float], list[float]]:
    """Frame frequencies of every mode and the mismatch of every link.

    Parameters
    ----------
    frequencies : mapping
        Mode frequencies, Hz; every mode of the network, in a stable order.
    links : sequence of PumpLink
        The pumped links.
    roots : sequence of str
        Modes to root components at first (their frame is their own
        frequency, so a probed port sits on resonance); then the rest in order.

    Returns
    -------
    frames : dict
        Frame frequency of each mode, Hz.
    mismatches : list of float
        Per link (same order), Hz: 0 on the spanning tree, the loop's frequency
        mismatch on links that close a loop.
    """
    for link in links:
        for m in (link.a, link.b):
            if m not in frequencies:
                raise ValueError(f"pump link {link.a}-{link.b} names unknown mode {m!r}")
        if link.kind not in ("conversion", "gain"):
            raise ValueError(f"pump link kind {link.kind!r} is not 'conversion' or 'gain'")
    order = list(dict.fromkeys([*roots, *frequencies]))
    adj: dict[str, list[int]] = {m: [] for m in frequencies}
    for k, link in enumerate(links):
        adj[link.a].append(k)
        adj[link.b].append(k)
    frames: dict[str, float] = {}
    tree: set[int] = set()
    for root in order:
        if root in frames:
            continue
        frames[root] = float(frequencies[root])
        queue = deque([root])
        while queue:
            m = queue.popleft()
            for k in adj[m]:
                link = links[k]
                other = link.b if link.a == m else link.a
                if other in frames:
                    continue
                frames[other] = frame_of(link, other, frames[m])
                tree.add(k)
                queue.append(other)
    mismatches = [
        0.0 if k in tree else frame_of(link, link.b, frames[link.a]) - frames[link.b]
        for k, link in enumerate(links)
    ]
    return frames, mismatches
