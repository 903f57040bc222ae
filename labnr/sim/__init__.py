"""The virtual lab: a simulated device seen only through emulated instruments.

Only tests and benchmarks may read the simulator's truth
(:meth:`VirtualLab.truth`); calibration-side code (measure, fit, calibrate,
lock, drivers) never imports this package.
"""

from labnr.sim.lab import Truth, VirtualLab
from labnr.sim.spec import DeviceSpec, SpecError, load_device

__all__ = ["DeviceSpec", "SpecError", "Truth", "VirtualLab", "load_device"]
