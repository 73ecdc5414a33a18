"""trm_core: Tiny Recursive Models as causal language models — data, model, training, generation.

The public API is importable from here. Names resolve lazily (PEP 562), so `import trm_core` or
`import trm_core.profile` does not import torch: the app opens at once and imports the heavy parts
when it first trains or generates. Subpackages by concern (see docs/contracts.md):

    model/       the causal TRM, the plain-transformer baseline, layers, the KV cache
    data/        example sources (GSM8K hub/JSONL, the synthetic generator), tokenizers, batches
    training/    the Trainer, one supervision step, optimizer, schedule, EMA, DDP, run files
    generation/  Generator, decode sessions, batched decoding, sampling, text stream, calculator
    evaluation/  answer extraction and GSM8K scoring, batched evaluation, the run's eval records
    experiments/ sweeps (grid × seeds) as a resumable queue, comparison with t-intervals
    runs/        checkpoints (write, read, load for inference), the run lock, run listing
    bench/       the speed benchmark behind `trm-tui bench`

profile.py (profiles; profile_checks.py validates them), events.py (what a training run
reports), errors.py (user errors), atomic.py (crash-safe file writes), limits.py (bounds on profile
values, the memory estimate), safe_read.py (the one bounded file loader) and printable.py (text
safe to echo on a terminal) are shared by all of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> module that defines it
_API = {
    "Profile": "trm_core.profile",
    "load_profile": "trm_core.profile",
    "parse_profile": "trm_core.profile",
    "ProfileError": "trm_core.profile",
    "UserError": "trm_core.errors",
    "build_tokenizer": "trm_core.data.tokenizers",
    "load_examples": "trm_core.data.sources",
    "build_model": "trm_core.model.lm",
    "count_parameters": "trm_core.model.lm",
    "Trainer": "trm_core.training.trainer",
    "supervision_step": "trm_core.training.step",
    "Generator": "trm_core.generation.generator",
    "SamplingOptions": "trm_core.generation.sampling",
    "safe_eval": "trm_core.generation.calculator",
    "load_for_inference": "trm_core.runs.inference",
    "list_runs": "trm_core.runs.listing",
    "evaluate": "trm_core.evaluation.evaluate",
    "extract_answer": "trm_core.evaluation.scoring",
}

__all__ = [
    "Generator",
    "Profile",
    "ProfileError",
    "SamplingOptions",
    "Trainer",
    "UserError",
    "__version__",
    "build_model",
    "build_tokenizer",
    "count_parameters",
    "evaluate",
    "extract_answer",
    "list_runs",
    "load_examples",
    "load_for_inference",
    "load_profile",
    "parse_profile",
    "safe_eval",
    "supervision_step",
]

if TYPE_CHECKING:  # for type checkers and editors; at run time names resolve in __getattr__
    from trm_core.data.sources import load_examples
    from trm_core.data.tokenizers import build_tokenizer
    from trm_core.errors import UserError
    from trm_core.evaluation.evaluate import evaluate
    from trm_core.evaluation.scoring import extract_answer
    from trm_core.generation.calculator import safe_eval
    from trm_core.generation.generator import Generator
    from trm_core.generation.sampling import SamplingOptions
    from trm_core.model.lm import build_model, count_parameters
    from trm_core.profile import Profile, ProfileError, load_profile, parse_profile
    from trm_core.runs.inference import load_for_inference
    from trm_core.runs.listing import list_runs
    from trm_core.training.step import supervision_step
    from trm_core.training.trainer import Trainer


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'trm_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return __all__
