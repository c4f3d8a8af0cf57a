"""Orchestration side of cutover: profiles, planning, runner, verdicts, store,
reports, schedule, exporter, CLI and TUI. Imports ``probes``, never the reverse."""

__version__ = "0.1.0"
