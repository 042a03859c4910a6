"""
The tracer: every component of the model on a real forward and backward pass.

- hooks.py     `trace(model)`: hooks on the real modules and wrappers of the functions its forward calls
               (the API, in the spirit of TransformerLens's run_with_cache); `NotObservable`
- stats.py     the statistics shown of every tensor
- training.py  `run_trace`: a few real training iterations, each traced
- sections.py  what each component's section shows, as plain data
- render.py    the sections on a terminal (rich) and as a PNG (matplotlib)
- text.py      the built-in training text and its byte-level tokenizer
- cli.py       `python -m nanochat_verify.trace`
"""

from nanochat_verify.trace.hooks import ActivationCache, NotObservable, trace
from nanochat_verify.trace.stats import TensorStats

__all__ = ["ActivationCache", "NotObservable", "TensorStats", "trace"]
