"""Architecture registry: how one HF `architectures` entry becomes GGUF hyper-parameters and tensors.

An architecture registers itself with :func:`register`, keyed by the HF class names it handles; the
decorator checks at definition time that the GGUF architecture exists in the `gguf` package and that no
name is claimed twice.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import gguf
import numpy as np

from distill2edge.export.common import ExportError

_REGISTRY: dict[str, type[GGUFArch]] = {}


def register(*hf_names: str) -> Callable[[type[GGUFArch]], type[GGUFArch]]:
    """Class decorator: make the class handle the given HF architecture names (e.g. "LlamaForCausalLM")."""

    def wrap(cls: type[GGUFArch]) -> type[GGUFArch]:
        if cls.model_arch not in gguf.MODEL_ARCH_NAMES:
            raise TypeError(f"{cls.__name__}: {cls.model_arch} is not a gguf.MODEL_ARCH")
        for name in hf_names:
            if name in _REGISTRY:
                raise TypeError(f"{cls.__name__}: {name} already registered by {_REGISTRY[name].__name__}")
            _REGISTRY[name] = cls
        return cls

    return wrap


def supported_architectures() -> list[str]:
    """The HF architecture names that can be exported, sorted."""
    return sorted(_REGISTRY)


def arch_for(config: Any) -> GGUFArch:
    """Instantiate the registered architecture for a transformers config, or raise naming what is supported."""
    names = list(getattr(config, "architectures", None) or [])
    for name in names:
        if name in _REGISTRY:
            return _REGISTRY[name](config)
    raise ExportError(
        f"unsupported architecture {names or '(none in config.json)'}; GGUF export supports: "
        + ", ".join(supported_architectures())
    )


def permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k rows from HF's rotate-half RoPE layout to GGML's interleaved one.

    HF keeps each head's rows as [first halves of the rotary pairs | second halves]; llama.cpp expects
    the pairs adjacent. `w` is `[n_head * head_dim, in]` (or a bias `[n_head * head_dim]`).
    """
    head_dim = w.shape[0] // n_head
    halves = w.reshape(n_head, 2, head_dim // 2, *w.shape[1:])  # [head, half, pair, ...]
    return halves.swapaxes(1, 2).reshape(w.shape)  # [head, pair, half, ...] -> interleaved


class GGUFArch:
    """Base: llama-style decoder hyper-parameters; subclasses adjust names, tensors and extras."""

    model_arch: ClassVar[gguf.MODEL_ARCH]
    #: Least F32 tolerance (relative to the logit scale) this architecture can meet in llama.cpp.
    f32_rel_logit_floor: ClassVar[float] = 0.0
    #: HF state-dict keys that carry no weights for llama.cpp.
    skip_suffixes: ClassVar[tuple[str, ...]] = ("rotary_emb.inv_freq",)

    def __init__(self, config: Any) -> None:
        self.config = config
        self.n_layers: int = config.num_hidden_layers
        self.n_head: int = config.num_attention_heads
        self.n_head_kv: int = getattr(config, "num_key_value_heads", None) or self.n_head
        self.head_dim: int = getattr(config, "head_dim", None) or config.hidden_size // self.n_head
        self.names = gguf.get_tensor_name_map(self.model_arch, self.n_layers)

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.model_arch]

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        """Add the `{arch}.*` keys llama.cpp reads to build the graph."""
        c = self.config
        w.add_context_length(c.max_position_embeddings)
        w.add_embedding_length(c.hidden_size)
        w.add_block_count(self.n_layers)
        w.add_feed_forward_length(c.intermediate_size)
        w.add_head_count(self.n_head)
        w.add_head_count_kv(self.n_head_kv)
        w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
        # The rope base the *torch* model uses (transformers 4.57 reads `rope_theta`, see common.py).
        w.add_rope_freq_base(float(getattr(c, "rope_theta", 10000.0)))
        w.add_rope_dimension_count(self.head_dim)
        if self.head_dim != c.hidden_size // self.n_head:
            w.add_key_length(self.head_dim)
            w.add_value_length(self.head_dim)
        w.add_vocab_size(c.vocab_size)
        self.write_rope_scaling(w)

    def write_rope_scaling(self, w: gguf.GGUFWriter) -> None:
        scaling = getattr(self.config, "rope_scaling", None)
        if not scaling:
            return
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(scaling["factor"]))
        elif kind != "default":
            raise ExportError(
                f"config.json: rope_scaling type {kind!r} is not supported by the GGUF exporter"
            )

    def tensors(self, state: dict[str, Any]) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (gguf name, float32 array) for every weight llama.cpp needs, transformed as it expects."""
        tied = bool(getattr(self.config, "tie_word_embeddings", False))
        for key, value in state.items():
            if key.endswith(self.skip_suffixes) or (tied and key == "lm_head.weight"):
                continue
            name = self.names.get_name(key, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise ExportError(f"{self.__class__.__name__}: no GGUF name for tensor {key!r}")
            yield name, self.transform(key, value.detach().float().cpu().numpy())

    def transform(self, key: str, data: np.ndarray) -> np.ndarray:
        return data


@register("LlamaForCausalLM")
class Llama(GGUFArch):
    """Llama family (SmolLM2, TinyLlama, Llama-2/3): q/k rows permuted to GGML's RoPE layout."""

    model_arch = gguf.MODEL_ARCH.LLAMA

    def transform(self, key: str, data: np.ndarray) -> np.ndarray:
        if key.endswith(("q_proj.weight", "q_proj.bias")):
            return permute_rope(data, self.n_head)
        if key.endswith(("k_proj.weight", "k_proj.bias")):
            return permute_rope(data, self.n_head_kv)
        return data


@register("MistralForCausalLM")
class Mistral(Llama):
    """Mistral runs as llama in llama.cpp; a sliding window shorter than the context is not applied."""

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        super().write_hparams(w)
        window = getattr(self.config, "sliding_window", None)
        if window and window < self.config.max_position_embeddings:
            warnings.warn(
                f"MistralForCausalLM: sliding_window={window} is not applied by llama.cpp's llama "
                "graph; outputs differ beyond that many tokens",
                stacklevel=2,
            )


@register("Qwen2ForCausalLM")
class Qwen2(GGUFArch):
    """Qwen2 / Qwen2.5: llama-like with q/k/v biases and NeoX RoPE (no permutation)."""

    model_arch = gguf.MODEL_ARCH.QWEN2

    def write_rope_scaling(self, w: gguf.GGUFWriter) -> None:
        scaling = getattr(self.config, "rope_scaling", None)
        if scaling and scaling.get("rope_type", scaling.get("type")) == "yarn":
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(float(scaling["factor"]))
            w.add_rope_scaling_orig_ctx_len(int(scaling["original_max_position_embeddings"]))
        else:
            super().write_rope_scaling(w)


@register("Gemma3ForCausalLM")
class Gemma3(GGUFArch):
    """Gemma 3 text models (e.g. Gemma-3-270M): sliding-window layers in a fixed 5:1 pattern, q/k norms,
    norm weights stored as (1 + w) because llama.cpp multiplies by the weight directly. llama.cpp's gemma3
    graph hard-codes the pattern and the local rope base, so configs that differ are refused."""

    model_arch = gguf.MODEL_ARCH.GEMMA3
    # ggml's CPU GELU reads an fp16 lookup table (input and output rounded to fp16): measured 6e-4 x logit
    # scale on a random 7-layer model, 2e-6 with the MLPs zeroed, so F32 parity cannot be tighter.
    f32_rel_logit_floor = 2e-3
    swa_period: ClassVar[int] = 6  # every 6th layer attends globally, the rest use the sliding window

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        c = config
        expected = [
            "full_attention" if (i + 1) % self.swa_period == 0 else "sliding_attention"
            for i in range(self.n_layers)
        ]
        problems = []
        if getattr(c, "layer_types", expected) != expected:
            problems.append(
                f"layer_types {c.layer_types} (llama.cpp assumes every {self.swa_period}th is global)"
            )
        if float(getattr(c, "rope_local_base_freq", 10000.0)) != 10000.0:
            problems.append(f"rope_local_base_freq {c.rope_local_base_freq} (llama.cpp uses 10000)")
        if getattr(c, "query_pre_attn_scalar", self.head_dim) != self.head_dim:
            problems.append(f"query_pre_attn_scalar {c.query_pre_attn_scalar} != head_dim {self.head_dim}")
        for key in ("final_logit_softcapping", "attn_logit_softcapping"):
            if getattr(c, key, None) is not None:
                problems.append(f"{key} {getattr(c, key)}")
        if problems:
            raise ExportError(
                "config.json: Gemma3 settings llama.cpp cannot reproduce: " + "; ".join(problems)
            )

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        super().write_hparams(w)
        if self.head_dim == self.config.hidden_size // self.n_head:  # else the base class wrote them
            w.add_key_length(self.head_dim)
            w.add_value_length(self.head_dim)
        w.add_sliding_window(int(self.config.sliding_window))

    def transform(self, key: str, data: np.ndarray) -> np.ndarray:
        return data + 1.0 if key.endswith("norm.weight") else data
