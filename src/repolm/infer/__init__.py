"""The inference stage: an id-level generation engine, sampling, prompt formats and a text layer."""

from repolm.infer.engine import Engine, StepOutput
from repolm.infer.sampling import SamplingParams

__all__ = ["Engine", "SamplingParams", "StepOutput"]
