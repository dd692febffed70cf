"""ybgate: gateway daemon for the hospital side of the 医保专网."""

__version__ = "0.1.0"
