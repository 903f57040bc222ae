"""QCoDeS instrument drivers for labnr (installed as ``labnr.drivers``)."""
