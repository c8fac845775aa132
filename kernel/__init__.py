"""The kernel: what every part of stepwatch shares.

Settings, the one door to ClickHouse (storage, migrations), the domain errors, logging, and the
small tables every part reads and the CLI and pages write: sites, processes, teams, users,
band versions, stored flags, the audit log. The kernel imports no part (collector, analysis,
coaching, dashboards) and not the application (stepwatch); tests/test_layers.py checks it.
"""
