"""Analysis of models: cost (parameters, FLOPs, latency, memory), statistics over seeds, comparisons.

* :mod:`.measure`: the one measuring library (every number of one kind comes from one function);
* :mod:`.profile`: the cost of a segmentor;
* :mod:`.specs`: naming the models of a comparison; :mod:`.results`: reading what runs recorded;
* :mod:`.stats`: means, intervals, the paired bootstrap over seeds and images; :mod:`.comparison`: a
  comparison's result; :mod:`.report`: markdown, CSV and JSON of it;
* :mod:`.op_bench`, :mod:`.attention_bench`: the op and attention-zoo benchmarks.

Running a comparison (training, evaluating) is orchestration: :mod:`seg.apis.compare`.
"""
from .comparison import Comparison, ModelResult, Run, compare_to_baseline, summarize
from .measure import count_flops, count_parameters, environment, mib, peak_memory, si, time_call
from .profile import CostReport, measure_pass, profile_segmentor
from .report import to_csv, to_json, to_markdown
from .results import RunMetrics, read_per_image_counts, read_run_metrics
from .specs import BACKBONES, ModelSpec, available_models, parse_size, parse_spec, spec_model
from .stats import (
    MIN_SEEDS,
    Difference,
    Interval,
    bootstrap_paired_difference,
    mean_interval,
    miou_from_counts,
    paired_bootstrap,
    seeds_needed,
)

__all__ = [
    'BACKBONES', 'MIN_SEEDS', 'Comparison', 'CostReport', 'Difference', 'Interval', 'ModelResult', 'ModelSpec', 'Run',
    'RunMetrics', 'available_models', 'bootstrap_paired_difference', 'compare_to_baseline', 'count_flops',
    'count_parameters', 'environment', 'mean_interval', 'measure_pass', 'mib', 'miou_from_counts', 'paired_bootstrap',
    'parse_size', 'parse_spec', 'peak_memory', 'profile_segmentor', 'read_per_image_counts', 'read_run_metrics',
    'seeds_needed', 'si', 'spec_model', 'summarize', 'time_call', 'to_csv', 'to_json', 'to_markdown',
]
