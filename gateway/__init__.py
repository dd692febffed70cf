"""ybgate: gateway daemon for the hospital side of the 医保专网."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ybgate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.1.0"
