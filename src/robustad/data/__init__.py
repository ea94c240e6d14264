"""Contaminated image datasets."""

from robustad.data.datamodule import ContaminatedDataModule
from robustad.data.sources import ImageSet

__all__ = ["ContaminatedDataModule", "ImageSet"]
