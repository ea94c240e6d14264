"""Pure torch networks (no Lightning): exportable and testable on their own."""

from robustad.models.networks.conv import ConvAutoencoder
from robustad.models.networks.mlp import MLPAutoencoder
from robustad.models.networks.pca import PCAReconstructor
from robustad.models.networks.residual import PreActResidualBlock, ResidualAutoencoder
from robustad.models.networks.rsrae import ConvRSRAutoencoder, RSRAutoencoder, RSRLayer, RSRNetwork
from robustad.models.networks.vae import MLPVAE, GaussianVAE, ResidualVAE, VAEOutput

__all__ = [
    "MLPVAE",
    "ConvAutoencoder",
    "ConvRSRAutoencoder",
    "GaussianVAE",
    "MLPAutoencoder",
    "PCAReconstructor",
    "PreActResidualBlock",
    "RSRAutoencoder",
    "RSRLayer",
    "RSRNetwork",
    "ResidualAutoencoder",
    "ResidualVAE",
    "VAEOutput",
]
