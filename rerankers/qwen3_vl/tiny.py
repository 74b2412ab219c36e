"""A tiny random-weight Qwen3-VL reranker, written in the published checkpoints' layout.

The folder holds what ``Qwen/Qwen3-VL-Reranker-2B`` holds, laid out as transformers 4.57
(the version the reference pins) wrote it: ``config.json`` with ``rope_scaling`` and
``tie_word_embeddings`` in ``text_config``, ``preprocessor_config.json`` and
``video_preprocessor_config.json``, ``chat_template.json``, ``tokenizer.json`` with
``vocab.json`` and ``merges.txt``, and a ``tokenizer_config.json`` that lists
``additional_special_tokens``. Every file is written here rather than by the installed
transformers' ``save_pretrained``, whose layout changes between major versions: so
transformers 4.57 and 5 both load it, with the tied yes/no head, through
``Qwen3VLForConditionalGeneration.from_pretrained`` and ``AutoProcessor.from_pretrained``,
and every code path (prompt, vision tower, 3D rope, deepstack, yes/no head) runs offline.
Its weights are random: its scores and rankings are meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Qwen's control tokens, in Qwen's order (they follow the ordinary vocabulary there too).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen's byte-level pre-tokenizer split: letters, single digits, punctuation runs, newlines.
_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Renders the Qwen chat format: one block per message, images and videos as vision
# placeholders the processor expands, text items verbatim and back to back.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' ~ message['role'] ~ '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' or 'image' in item -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'video' or 'video' in item -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in item -%}"
    "{{- item['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

_CORPUS_LINES: tuple[str, ...] = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".',
    "Given a search query, retrieve relevant candidates that answer the query.",
    "<Instruct>: <Query>: <Document>: NULL",
    "system\nuser\nassistant\nyes\nno\n",
    "yes no yes no yes no Yes No",
    "a dog runs on the grass in the park while a child throws a red ball",
    "two people ride bicycles along the beach at sunset near the water",
    "a photo of a cat sleeping on a sofa next to a window with white curtains",
    "the video shows a man cooking pasta in a small kitchen with a blue pot",
    "a group of children play football on a muddy field after the rain",
    "find the image that best matches the description of the scene",
    "which passage answers the question about the history of the city",
    "0.0 0.5 1.0 1.5 2.0 2.5 3.0 seconds 10 20 30 40 50 60 70 80 90",
)


def _corpus() -> list[str]:
    # Repetition makes "yes", "no" and the prompt words frequent enough to merge into
    # single tokens, as they are in the real vocabulary.
    return [line for line in _CORPUS_LINES for _ in range(50)]


def train_tokenizer(vocab_size: int = 640) -> Any:
    """A small byte-level BPE (a ``tokenizers.Tokenizer``) with Qwen's pre-tokenizer, its
    control tokens added after the ordinary vocabulary, and "yes" and "no" one token each."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus(), trainer=trainer)
    core.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
    )
    for word in ("yes", "no"):
        pieces = core.encode(word, add_special_tokens=False).tokens
        if len(pieces) != 1:
            raise RuntimeError(f"tiny tokenizer splits {word!r} into {pieces}; enlarge the corpus")
    return core


def published_config(
    token_ids: dict[str, int],
    vocab_size: int,
    text_hidden: int = 64,
    text_layers: int = 2,
    vision_hidden: int = 32,
    vision_layers: int = 2,
) -> dict[str, Any]:
    """``config.json`` as the published checkpoints lay it out: the real geometry (16px
    patches, 2x2 merge, 2-frame tubelets, interleaved 3D rope, deepstack) at toy widths."""
    head_dim = 16 if text_hidden <= 128 else 32
    # mrope_section splits the head_dim/2 rotary frequencies into (t, h, w),
    # as [24, 20, 20] does for the real head_dim of 128.
    mrope_section = [4, 2, 2] if head_dim == 16 else [6, 5, 5]
    text_config = {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": token_ids["<|endoftext|>"],
        "dtype": "float32",
        "eos_token_id": token_ids["<|im_end|>"],
        "head_dim": head_dim,
        "hidden_act": "silu",
        "hidden_size": text_hidden,
        "initializer_range": 0.02,
        "intermediate_size": 2 * text_hidden,
        "max_position_embeddings": 32768,
        "model_type": "qwen3_vl_text",
        "num_attention_heads": text_hidden // head_dim,
        "num_hidden_layers": text_layers,
        "num_key_value_heads": max(1, text_hidden // head_dim // 2),
        "pad_token_id": token_ids["<|endoftext|>"],
        "rms_norm_eps": 1e-06,
        "rope_scaling": {
            "mrope_interleaved": True,
            "mrope_section": mrope_section,
            "rope_type": "default",
        },
        "rope_theta": 5_000_000,
        "tie_word_embeddings": True,
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    vision_config = {
        "deepstack_visual_indexes": list(range(vision_layers - 1)) or [0],
        "depth": vision_layers,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": vision_hidden,
        "in_channels": 3,
        "initializer_range": 0.02,
        "intermediate_size": 2 * vision_hidden,
        "model_type": "qwen3_vl",
        "num_heads": 2,
        "num_position_embeddings": 64,
        "out_hidden_size": text_hidden,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "image_token_id": token_ids["<|image_pad|>"],
        "model_type": "qwen3_vl",
        "text_config": text_config,
        "tie_word_embeddings": True,
        "transformers_version": "4.57.0",
        "video_token_id": token_ids["<|video_pad|>"],
        "vision_config": vision_config,
        "vision_end_token_id": token_ids["<|vision_end|>"],
        "vision_start_token_id": token_ids["<|vision_start|>"],
    }


_HALF = [0.5, 0.5, 0.5]
_PATCH_GEOMETRY = {"merge_size": 2, "patch_size": 16, "temporal_patch_size": 2}
_PIXEL_STEPS = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": _HALF,
    "image_std": _HALF,
    "resample": 3,
    "rescale_factor": 1 / 255,
}

PREPROCESSOR_CONFIG = {
    **_PIXEL_STEPS,
    **_PATCH_GEOMETRY,
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen3VLProcessor",
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
}
"""The published checkpoints' image processor settings."""

VIDEO_PREPROCESSOR_CONFIG = {
    **_PIXEL_STEPS,
    **_PATCH_GEOMETRY,
    "do_sample_frames": True,
    "fps": 2,
    "max_frames": 768,
    "min_frames": 4,
    "processor_class": "Qwen3VLProcessor",
    "return_metadata": False,
    "size": {"longest_edge": 25165824, "shortest_edge": 4096},
    "video_processor_type": "Qwen3VLVideoProcessor",
}
"""The published checkpoints' video processor settings."""


def tokenizer_config(core: Any) -> dict[str, Any]:
    """``tokenizer_config.json`` in the published layout: Qwen2Tokenizer, the control
    tokens as ``additional_special_tokens`` and in ``added_tokens_decoder``."""
    ids = {token: core.token_to_id(token) for token in SPECIAL_TOKENS}
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(ids[token]): {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for token in SPECIAL_TOKENS
        },
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t != "<|endoftext|>"],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 262144,
        "pad_token": "<|endoftext|>",
        "processor_class": "Qwen3VLProcessor",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def build_tiny_qwen3_vl_reranker(
    out_dir: Path,
    seed: int = 0,
    *,
    text_hidden: int = 64,
    text_layers: int = 2,
    vision_hidden: int = 32,
    vision_layers: int = 2,
) -> Path:
    """Write a deterministic tiny Qwen3-VL reranker folder in the published layout;
    returns it. Same seed and sizes give byte-identical files (under one transformers
    version: its weight initialisation decides the random values)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    core = train_tokenizer()
    token_ids = {token: core.token_to_id(token) for token in SPECIAL_TOKENS}
    vocab_size = -(-core.get_vocab_size() // 64) * 64
    config = published_config(
        token_ids, vocab_size, text_hidden, text_layers, vision_hidden, vision_layers
    )
    _write_json(out_dir / "config.json", config)
    _write_json(
        out_dir / "generation_config.json",
        {
            "bos_token_id": token_ids["<|endoftext|>"],
            "eos_token_id": [token_ids["<|im_end|>"], token_ids["<|endoftext|>"]],
            "pad_token_id": token_ids["<|endoftext|>"],
        },
    )
    _write_tokenizer(out_dir, core)
    _write_json(out_dir / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    _write_json(out_dir / "video_preprocessor_config.json", VIDEO_PREPROCESSOR_CONFIG)
    _write_json(out_dir / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    _write_weights(out_dir, seed)
    return out_dir


def _write_tokenizer(out_dir: Path, core: Any) -> None:
    core.save(str(out_dir / "tokenizer.json"))
    model = json.loads(core.to_str())["model"]
    _write_json(out_dir / "vocab.json", model["vocab"])
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config(core))


def _write_weights(out_dir: Path, seed: int) -> None:
    """Random weights under the published tensor names; the head tied to the embeddings
    is left out, as save_pretrained leaves it out."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    config = AutoConfig.from_pretrained(out_dir)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    state = {
        name: tensor.detach().contiguous()
        for name, tensor in model.state_dict().items()
        if name != "lm_head.weight"
    }
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
