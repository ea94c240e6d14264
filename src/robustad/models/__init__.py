"""Detectors: thin LightningModules over plain torch networks."""

from robustad.models.ae import AEModule
from robustad.models.base import AnomalyModule
from robustad.models.pca import PCAModule
from robustad.models.rsrae import RSRAEModule
from robustad.models.vae import VAEModule

__all__ = ["AEModule", "AnomalyModule", "PCAModule", "RSRAEModule", "VAEModule"]
