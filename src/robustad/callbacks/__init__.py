"""Callbacks that read what validation and test steps return (`{"score", "target"}`)."""

from robustad.callbacks.diagnostics import TensorBoardDiagnostics
from robustad.callbacks.thresholding import AnomalyThreshold

__all__ = ["AnomalyThreshold", "TensorBoardDiagnostics"]
