"""robustad: unsupervised anomaly detection with autoencoders on contaminated image data."""

from robustad.resolvers import register_resolvers

__version__ = "0.1.0"

register_resolvers()
