"""Observability as code: SLO rules, runbooks and dashboards generated from ``observability/slos.yaml``."""
