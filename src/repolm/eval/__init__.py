"""Evaluation: one sandbox for generated code, the paper's benchmarks, pass@k, generators and reports."""
