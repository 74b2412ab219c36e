"""A tiny random-weight Qwen3-VL reranker, saved as a standard Hugging Face folder.

It loads through ``Qwen3VLForConditionalGeneration.from_pretrained`` and
``AutoProcessor.from_pretrained`` exactly like the published checkpoints, so every
code path (prompt, vision tower, 3D rope, deepstack, yes/no head) runs offline.
Its weights are random: its scores and rankings are meaningless.
"""

from __future__ import annotations

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


def build_tokenizer(vocab_size: int = 640) -> Any:
    """Train a small byte-level BPE with Qwen's pre-tokenizer and control tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

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
    vocab = core.get_vocab()
    vocab.update({token: len(vocab) + i for i, token in enumerate(SPECIAL_TOKENS)})
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=_merges_of(core),
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=262144,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    for word in ("yes", "no"):
        pieces = tokenizer.tokenize(word)
        if len(pieces) != 1:
            raise RuntimeError(f"tiny tokenizer splits {word!r} into {pieces}; enlarge the corpus")
    return tokenizer


def _merges_of(core: Any) -> list[tuple[str, str]]:
    import json

    return [tuple(merge) for merge in json.loads(core.to_str())["model"]["merges"]]


def tiny_model_config(
    vocab_size: int,
    token_ids: dict[str, int],
    text_hidden: int = 64,
    text_layers: int = 2,
    vision_hidden: int = 32,
    vision_layers: int = 2,
) -> Any:
    """A Qwen3-VL config with the real geometry (16px patches, 2x2 merge, 2-frame
    tubelets, interleaved 3D rope, deepstack) at toy widths."""
    from transformers import Qwen3VLConfig

    head_dim = 16 if text_hidden <= 128 else 32
    # mrope_section splits the head_dim/2 rotary frequencies into (t, h, w),
    # as [24, 20, 20] does for the real head_dim of 128.
    mrope_section = [4, 2, 2] if head_dim == 16 else [6, 5, 5]
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": text_hidden,
        "intermediate_size": 2 * text_hidden,
        "num_hidden_layers": text_layers,
        "num_attention_heads": text_hidden // head_dim,
        "num_key_value_heads": max(1, text_hidden // head_dim // 2),
        "head_dim": head_dim,
        "max_position_embeddings": 32768,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": mrope_section,
            "mrope_interleaved": True,
        },
        "pad_token_id": token_ids["<|endoftext|>"],
    }
    vision_config = {
        "depth": vision_layers,
        "hidden_size": vision_hidden,
        "intermediate_size": 2 * vision_hidden,
        "num_heads": 2,
        "out_hidden_size": text_hidden,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": list(range(vision_layers - 1)) or [0],
    }
    return Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_processor(tokenizer: Any) -> Any:
    """The published checkpoints' processor settings around the tiny tokenizer."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    half = [0.5, 0.5, 0.5]
    geometry = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2}
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": 65536, "longest_edge": 16777216},
        image_mean=half,
        image_std=half,
        **geometry,
    )
    video_processor = Qwen3VLVideoProcessor(
        size={"shortest_edge": 4096, "longest_edge": 25165824},
        image_mean=half,
        image_std=half,
        **geometry,
    )
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_qwen3_vl_reranker(
    out_dir: Path,
    seed: int = 0,
    *,
    text_hidden: int = 64,
    text_layers: int = 2,
    vision_hidden: int = 32,
    vision_layers: int = 2,
) -> Path:
    """Write a deterministic tiny Qwen3-VL reranker folder; returns it.

    Same seed and sizes give byte-identical weights and files.
    """
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    token_ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64
    config = tiny_model_config(
        vocab_size, token_ids, text_hidden, text_layers, vision_hidden, vision_layers
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.save_pretrained(out_dir)
    build_processor(tokenizer).save_pretrained(out_dir)
    return out_dir
