"""open_clip embedder: built-in names with a pretrained tag, ``hf-hub:`` and ``local-dir:``."""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.config import EmbedderConfig

logger = logging.getLogger(__name__)

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_precision(requested: str, device: torch.device) -> str:
    # fp16 halves memory and doubles throughput on GPU; CPUs lack fast fp16 kernels.
    if requested == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return requested


def model_id_for(config: EmbedderConfig) -> str:
    """Names the weights. For a local folder, the id carries a hash of its files,
    so an index refuses a different model saved under the same path."""
    if config.model.startswith(LOCAL_DIR):
        folder = Path(config.model[len(LOCAL_DIR) :]).expanduser()
        return f"open_clip:local-dir@{_folder_digest(folder)}"
    if config.model.startswith(HF_HUB):
        return f"open_clip:{config.model}"
    return f"open_clip:{config.model}@{config.pretrained or 'random'}"


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("open_clip_config.json", "open_clip_model.safetensors"):
        path = folder / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class OpenClipEmbedder:
    """Loads on construction; vectors come back float32 and L2-normalised."""

    def __init__(self, config: EmbedderConfig) -> None:
        import open_clip

        self.config = config
        self.device = resolve_device(config.device)
        precision = resolve_precision(config.precision, self.device)
        has_schema = config.model.startswith((LOCAL_DIR, HF_HUB))
        _require_weights(config)
        model, _, preprocess = open_clip.create_model_and_transforms(
            config.model,
            pretrained=None if has_schema else config.pretrained,
            precision=precision,
            device=self.device,
        )
        model.eval()
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(config.model)
        self._dtype = next(model.parameters()).dtype
        self._model_id = model_id_for(config)
        self._dim = int(self._probe_dim())
        logger.info("loaded %s on %s (%s)", self._model_id, self.device, precision)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        return self._preprocess

    @torch.inference_mode()
    def embed_image_tensors(self, batch: torch.Tensor) -> np.ndarray:
        features = self._model.encode_image(batch.to(self.device, self._dtype))
        return _normalised(features)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = [
            self.embed_image_tensors(torch.stack([self._preprocess(im) for im in part]))
            for part in _batches(images, self.config.batch_size)
        ]
        return np.concatenate(chunks)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        for part in _batches(texts, self.config.batch_size):
            tokens = self._tokenizer(list(part)).to(self.device)
            chunks.append(_normalised(self._model.encode_text(tokens)))
        return np.concatenate(chunks)

    @torch.inference_mode()
    def _probe_dim(self) -> int:
        tokens = self._tokenizer(["dimension probe"]).to(self.device)
        return self._model.encode_text(tokens).shape[-1]


def _require_weights(config: EmbedderConfig) -> None:
    """Fail fast, in one line, when the weights are on the hub and the hub is out of reach."""
    import open_clip

    from pipeline.hub import require_hub_model

    weights = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    if config.model.startswith(HF_HUB):
        repo = config.model.removeprefix(HF_HUB)
        require_hub_model("CLIP", repo, "embedder.model", [("open_clip_config.json",), weights])
        return
    if config.model.startswith(LOCAL_DIR) or not config.pretrained:
        return
    source = (open_clip.get_pretrained_cfg(config.model, config.pretrained) or {}).get("hf_hub")
    if source:  # "org/name/" (open_clip's default file names) or "org/name/file"
        repo, filename = posixpath.split(source)
        require_hub_model("CLIP", repo, "embedder.model", [(filename,) if filename else weights])


def _normalised(features: torch.Tensor) -> np.ndarray:
    features = torch.nn.functional.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32, copy=False)


def _batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]
