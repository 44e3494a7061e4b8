"""bertbeam pipeline package: command line and Beam pipeline wiring."""
__version__ = "0.1.0"
