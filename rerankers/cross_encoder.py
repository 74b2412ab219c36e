"""A text cross-encoder (sentence-transformers ``CrossEncoder``) for text-only corpora.

Only text is scored: a document without text fails with its reason, and a
document's image or video is ignored. Scores go through a sigmoid, so they lie in
[0, 1] like the Qwen3-VL reranker's. It takes no instruction, and ignores a request's
image preprocessing (it sees no images).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from pipeline.hub import WEIGHT_FILES, quiet_loading, require_hub_model
from pipeline.schema import Content
from rerankers.base import DocumentFailure, RerankerBase, ScoreOptions, ScoreReport
from rerankers.config import CrossEncoderRerankerConfig

logger = logging.getLogger(__name__)

LOCAL_DIR = "local-dir:"
NO_TEXT = "document has no text; the cross_encoder reranker scores text only"


class CrossEncoderReranker(RerankerBase):
    def __init__(self, config: CrossEncoderRerankerConfig) -> None:
        self.config = config
        self._model: Any = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def placement(self) -> tuple[str, str] | None:
        """(device, dtype) of the loaded model; None while not loaded."""
        if self._model is None:
            return None
        dtype = next(self._model.model.parameters()).dtype
        return str(self._model.device), str(dtype).removeprefix("torch.")

    def load(self) -> None:
        if self._model is not None:
            return
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise ImportError(
                "the cross_encoder reranker needs sentence-transformers: "
                "pip install 'vlsearch[text]'"
            ) from exc
        import torch

        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = self.config.model.removeprefix(LOCAL_DIR)
        require_hub_model("reranker", model, "reranker.model", [("config.json",), WEIGHT_FILES])
        with quiet_loading(model):
            self._model = CrossEncoder(model, device=device, max_length=self.config.max_length)
        logger.info("loaded cross-encoder %s on %s", model, device)

    def unload(self) -> None:
        self._model = None

    def _score(
        self, query: Content, documents: Sequence[Content], options: ScoreOptions
    ) -> ScoreReport:
        if query.text is None:
            raise ValueError("the cross_encoder reranker needs a text query; this query has none")
        failures = [
            DocumentFailure(index=i, reason=NO_TEXT)
            for i, document in enumerate(documents)
            if document.text is None
        ]
        scorable = [i for i, document in enumerate(documents) if document.text is not None]
        scores = [math.nan] * len(documents)
        if scorable:
            for index, score in zip(
                scorable, self._predict(query.text, documents, scorable), strict=True
            ):
                scores[index] = score
        return ScoreReport(scores=scores, failures=failures)

    def _predict(self, query: str, documents: Sequence[Content], rows: list[int]) -> list[float]:
        import torch

        self.load()
        pairs = [(query, documents[i].text) for i in rows]
        values = self._model.predict(
            pairs,
            batch_size=self.config.batch_size,
            activation_fn=torch.nn.Sigmoid(),
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [float(v) for v in values.reshape(len(rows), -1)[:, 0]]


__all__ = ["CrossEncoderReranker"]
