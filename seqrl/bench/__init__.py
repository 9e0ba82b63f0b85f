"""Benchmark suites and their runner (``seqrl bench SUITE``)."""

from . import gam as _gam  # noqa: F401  (registers the suite)
from .runner import SUITES, BenchOptions, RunRecord, Suite, register_suite, run_suite

__all__ = ["SUITES", "BenchOptions", "RunRecord", "Suite", "register_suite", "run_suite"]
