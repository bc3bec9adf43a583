"""Models: references (`embedded:NAME`, folder, hub id) -> loaded models, embedded models converted from
packaged GGUFs, student initialisation by layer pruning, and the vocabulary pre-flight for vanilla KD.
"""

from distill2edge.models.embedded import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    EmbeddedModelError,
    cache_dir,
    embedded_gguf,
    ensure_embedded,
    register_embedded_model,
)
from distill2edge.models.layer_select import select_layers
from distill2edge.models.loading import DTYPES, ModelLoadError, load_model, resolve_model
from distill2edge.models.prune import init_student_from_teacher, prune_layers
from distill2edge.models.vocab import (
    VocabAlignment,
    VocabularyMismatchError,
    check_same_vocabulary,
    trim_logits,
)

__all__ = [
    "DTYPES",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "EmbeddedModelError",
    "ModelLoadError",
    "VocabAlignment",
    "VocabularyMismatchError",
    "cache_dir",
    "check_same_vocabulary",
    "embedded_gguf",
    "ensure_embedded",
    "init_student_from_teacher",
    "load_model",
    "prune_layers",
    "register_embedded_model",
    "resolve_model",
    "select_layers",
    "trim_logits",
]
