"""labnr.measure: S-matrix acquisition, pump and flux sweeps, storage.

Every measurement takes a lab session (:func:`labnr.session.open_lab`, or
anything with ``config``, ``station``, ``vna``, ``pump`` and ``flux``), stores
the full S-matrix of every point in one QCoDeS dataset and returns it:

>>> from labnr.session import open_lab                          # doctest: +SKIP
>>> with open_lab("configs/sim_jpc_circulator.yaml") as lab:
...     lab.pump.output(True)
...     ds = sweep_pump_phase(lab, "bc", np.linspace(-np.pi, np.pi, 37))

=========================  ==================================================
``measure_smatrix``        one S-matrix at the present settings (stored)
``acquire_smatrix``        the same as arrays, not stored (calibration, lock)
``sweep_pump_phase``       S-matrix vs one tone's phase (rad)
``sweep_pump_amplitude``   S-matrix vs one tone's amplitude (V)
``sweep_pump``             S-matrix vs any one tone setting
``map_pumps``              S-matrix on a 2D grid of two tone settings
``sweep_flux``             reflections vs flux (Phi0), wide bands
``load``                   a run (id, dataset or .h5) as an xarray Dataset
``export_hdf5``            one self-describing .h5 file per run
``to_touchstone``          one S-matrix as .s2p/.s3p (scikit-rf)
``plot_smatrix`` ...       S-matrix grid, 2D maps, flux maps (PNG + Figure)
=========================  ==================================================

Every run is also exported to ``<data_dir>/run_<id>_<guid>.h5`` when it ends
(``storage.export_hdf5`` in the config; interrupted runs too); a run killed
before its export is exported at the next start
(:func:`labnr.measure.recovery.recover`).

Frequency-converting devices are measured in the VNA's frequency-offset mode
with the receivers following the pumps (:mod:`labnr.measure.plan`); the
dataset layout is documented in :mod:`labnr.measure.dataset`. Ctrl-C finishes
(or abandons) the current point, completes the dataset, switches the pumps
off and re-raises (:mod:`labnr.measure.runner`). This package never imports
``labnr.sim``.
"""

from labnr.measure.acquire import MeasurementSession, SMatrixMeta, acquire_smatrix, make_plan
from labnr.measure.dataset import Knob, element_name
from labnr.measure.export import export_hdf5, export_netcdf, to_touchstone
from labnr.measure.loading import element_frequencies, load
from labnr.measure.plan import (
    PumpEdge,
    ReceiverMap,
    SMatrixPlan,
    nominal_pump_frequency,
    plan_smatrix,
    receiver_map,
)
from labnr.measure.plots import plot_flux_map, plot_map, plot_smatrix, plot_sweep
from labnr.measure.sweeps import (
    map_pumps,
    measure_smatrix,
    sweep_flux,
    sweep_pump,
    sweep_pump_amplitude,
    sweep_pump_phase,
)

__all__ = [
    "Knob",
    "MeasurementSession",
    "PumpEdge",
    "ReceiverMap",
    "SMatrixMeta",
    "SMatrixPlan",
    "acquire_smatrix",
    "element_frequencies",
    "element_name",
    "export_hdf5",
    "export_netcdf",
    "load",
    "make_plan",
    "map_pumps",
    "measure_smatrix",
    "nominal_pump_frequency",
    "plan_smatrix",
    "plot_flux_map",
    "plot_map",
    "plot_smatrix",
    "plot_sweep",
    "receiver_map",
    "sweep_flux",
    "sweep_pump",
    "sweep_pump_amplitude",
    "sweep_pump_phase",
    "to_touchstone",
]
