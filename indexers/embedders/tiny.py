"""A tiny random-weight open_clip model, saved so ``local-dir:`` loads it.

It has the shape of a CLIP model and runs every code path offline, but its
weights are random: rankings made with it are meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_CONFIG: dict = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    # open_clip's bundled BPE tokenizer (49408 tokens) works offline, so the text
    # tower keeps that vocabulary and the standard 77-token context.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"


def build_tiny_clip(out_dir: Path, seed: int = 0) -> Path:
    """Write a deterministic tiny CLIP to ``out_dir``; returns the folder."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    preprocess_cfg = {
        "mean": list(open_clip.OPENAI_DATASET_MEAN),
        "std": list(open_clip.OPENAI_DATASET_STD),
    }
    config = {"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": preprocess_cfg}
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_NAME))
    (out_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out_dir


def is_tiny_clip(folder: Path) -> bool:
    return (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()
