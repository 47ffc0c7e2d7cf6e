"""Health probes: one module per probe kind, each registering itself in PROBES."""

from probes import freshness_sql, http, metrics  # noqa: F401  (registers the built-in kinds)
from probes.base import PROBES, Outcome, Probe, ProbeConfig, ProbeContext, ProbeKind, Reading

__all__ = ["PROBES", "Outcome", "Probe", "ProbeConfig", "ProbeContext", "ProbeKind", "Reading"]
