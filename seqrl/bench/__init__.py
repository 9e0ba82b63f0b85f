"""Benchmark suites and their runner (``seqrl bench SUITE``)."""

from . import control as _control  # noqa: F401  (registers the suite)
from . import gam as _gam  # noqa: F401
from . import seq2seq as _seq2seq  # noqa: F401
from .runner import run_suite
from .suite import SUITES, BenchOptions, RunRecord, Suite, override_settings, register_suite

__all__ = ["SUITES", "BenchOptions", "RunRecord", "Suite", "override_settings", "register_suite", "run_suite"]
