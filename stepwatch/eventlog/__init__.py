"""Event logs in and out: import a CRM's history (CSV, XES) as step visits, export visits for
process-mining tools. The rules and their reasons are in docs/import-export.md."""

from __future__ import annotations

from stepwatch.eventlog._export import CSV_COLUMNS, export_csv, export_ocel, export_xes
from stepwatch.eventlog._import import (
    NAMESPACE,
    ImportOptions,
    ImportSummary,
    customer_ref,
    import_log,
    session_id_of,
    step_key,
)
from stepwatch.eventlog._read import CsvMapping, parse_timestamp, read_mapping_file

__all__ = [
    "CSV_COLUMNS",
    "NAMESPACE",
    "CsvMapping",
    "ImportOptions",
    "ImportSummary",
    "customer_ref",
    "export_csv",
    "export_ocel",
    "export_xes",
    "import_log",
    "parse_timestamp",
    "read_mapping_file",
    "session_id_of",
    "step_key",
]
