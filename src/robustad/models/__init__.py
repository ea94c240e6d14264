"""Detectors: thin LightningModules over plain torch networks."""

from robustad.models.ae import AEModule
from robustad.models.base import AnomalyModule
from robustad.models.rsrae import RSRAEModule

__all__ = ["AEModule", "AnomalyModule", "RSRAEModule"]
