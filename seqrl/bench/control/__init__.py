"""The control suite (``seqrl bench control``): reward maximization vs distribution matching under constraints
([GDC++] Sec. 4). ``tasks``: the constraints; ``estimates``: the target and what is measured; ``suite``: the rows
and the runs; ``report``: tables and plots."""

from .estimates import (
    ControlTarget,
    advantage_stats,
    control_metrics,
    divergences_from_pool,
    dpg_advantage,
    gradient_variance,
    prepare_target,
    variance_diagnostics,
)
from .report import plot_curves, results_table, sweep_table
from .suite import DIVERGENCES, QUICK_SETTINGS, ControlRow, ControlSettings, ControlSuite, SampleCurve, control_rows
from .tasks import TASK_NAMES, ControlTask, PointwiseReward, control_tasks, more_female_than_male, word_feature

__all__ = [
    "DIVERGENCES", "QUICK_SETTINGS", "TASK_NAMES", "ControlRow", "ControlSettings", "ControlSuite", "ControlTarget",
    "ControlTask", "PointwiseReward", "SampleCurve", "advantage_stats", "control_metrics", "control_rows",
    "control_tasks", "divergences_from_pool", "dpg_advantage", "gradient_variance", "more_female_than_male",
    "plot_curves", "prepare_target", "results_table", "sweep_table", "variance_diagnostics", "word_feature",
]
