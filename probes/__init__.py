"""Health probes: one module per probe kind, each registering itself in PROBES."""

from probes import (  # noqa: F401  (registers the built-in kinds)
    canary,
    freshness_prometheus,
    freshness_sql,
    http,
    kubernetes,
    metrics,
    prometheus,
)
from probes.base import PROBES, Outcome, Probe, ProbeConfig, ProbeContext, ProbeKind, Reading

__all__ = ["PROBES", "Outcome", "Probe", "ProbeConfig", "ProbeContext", "ProbeKind", "Reading"]
