"""Pure torch networks (no Lightning): exportable and testable on their own."""

from robustad.models.networks.mlp import MLPAutoencoder
from robustad.models.networks.rsrae import RSRAutoencoder, RSRLayer

__all__ = ["MLPAutoencoder", "RSRAutoencoder", "RSRLayer"]
