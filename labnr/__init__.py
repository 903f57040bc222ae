"""labnr: calibration and control of nonreciprocal parametric devices.

Subpackages
-----------
model
    Coupled-mode input-output theory (pure numpy).
sim
    The virtual lab: a simulated device behind emulated SCPI instruments.
drivers
    QCoDeS instrument drivers (installed from the top-level ``drivers/`` folder).
"""

__version__ = "0.1.0"
