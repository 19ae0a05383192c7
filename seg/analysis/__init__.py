"""Analysis of models: cost (parameters, FLOPs, latency, memory) and side-by-side comparisons."""
from .compare import (
    BACKBONES,
    CompareRow,
    ComparisonResult,
    ModelSpec,
    RunMetrics,
    available_models,
    build_spec_model,
    parse_size,
    parse_spec,
    read_run_metrics,
    run_comparison,
    to_csv,
    to_markdown,
    train_config,
    write_outputs,
)
from .measure import count_flops, count_parameters, peak_memory, time_call
from .profile import CostReport, measure_pass, profile_segmentor

__all__ = [
    'BACKBONES', 'ComparisonResult', 'CompareRow', 'CostReport', 'ModelSpec', 'RunMetrics', 'peak_memory',
    'time_call', 'available_models', 'build_spec_model', 'count_flops', 'count_parameters', 'measure_pass',
    'parse_size',
    'parse_spec', 'profile_segmentor', 'read_run_metrics', 'run_comparison', 'to_csv', 'to_markdown',
    'train_config', 'write_outputs',
]
