"""robustad."""
