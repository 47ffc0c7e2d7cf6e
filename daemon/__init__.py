"""opsmedic: a self-healing ops daemon for data pipelines and deployments."""

__version__ = "0.1.0"
