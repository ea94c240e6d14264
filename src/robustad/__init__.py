"""robustad: unsupervised anomaly detection with autoencoders on contaminated image data."""

from typing import Any

from robustad.resolvers import register_resolvers

__version__ = "0.1.0"
__all__ = ["Detector"]

register_resolvers()


def __getattr__(name: str) -> Any:
    """`from robustad import Detector` without importing torch for `import robustad` alone (the
    command-line tools answer --help before torch loads)."""
    if name == "Detector":
        from robustad.detector import Detector

        return Detector
    raise AttributeError(f"module 'robustad' has no attribute {name!r}")
