"""Benchmarks: the same questions answered by models in torch, onnxruntime and llama.cpp, with latency,
throughput, memory, size, accuracy and a memory-bandwidth roofline side by side.

Entry point for the pipeline and scripts: `run_bench(models, examples, out_dir, settings=...)` (with
`settings_for_recipe(recipe)` to ask questions as the recipe's evaluation does);
`markdown_tables(result)` renders the tables of a result (bench.json) for a report.
"""

from distill2edge.bench.api import run_bench, settings_for_recipe
from distill2edge.bench.measure import BenchSettings, latency_stats
from distill2edge.bench.roofline import ModelFacts, measure_bandwidth, model_roofline, roofline
from distill2edge.bench.spec import FORMATS, BenchError, BenchModel, detect_format, parse_model_spec
from distill2edge.bench.tables import markdown_tables

__all__ = [
    "FORMATS", "BenchError", "BenchModel", "BenchSettings", "ModelFacts", "detect_format", "latency_stats",
    "markdown_tables", "measure_bandwidth", "model_roofline", "parse_model_spec", "roofline", "run_bench",
    "settings_for_recipe",
]
