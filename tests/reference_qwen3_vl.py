"""Scores pairs the way the published reference reranker does, with its own libraries.

Run by tests/test_qwen3_vl_reference.py in a subprocess whose path starts with the
reference's pinned libraries (transformers 4.57, qwen-vl-utils 0.0.14, decord; `make
test` installs them into .venv/reference-4.57). Reads a JSON request on stdin and prints
JSON: the reference's scores, vlsearch's own scores computed under these same older
libraries, and whether the checkpoint loaded with its yes/no head tied.

The reference path is written here from reading the reference script
(QwenLM/Qwen3-VL-Embedding, src/models/qwen3_vl_reranker.py), not copied: messages in
its layout (video, then image, then text on each side; files as file:// URLs; frame lists
thinned to the reranker's max_frames and given the frame-list pixel budget; video files
given the request's fps and max_frames; images given their pixel range), qwen-vl-utils'
process_vision_info for the pixels, the processor with do_resize=False, and the score
sigmoid((w_yes - w_no) . h) of the last hidden state.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
DEFAULTS = {
    "min_pixels": 4 * 32 * 32,
    "max_pixels": 1800 * 32 * 32,
    "total_pixels": 10 * 768 * 32 * 32,
    "max_frames": 64,
    "fps": 1.0,
}


def side(item: dict, prefix: str, fps: float, max_frames: int) -> list[dict]:
    parts: list[dict] = [{"type": "text", "text": prefix}]
    video, image, text = item.get("video"), item.get("image"), item.get("text")
    if video is None and image is None and text is None:
        return [*parts, {"type": "text", "text": "NULL"}]
    if isinstance(video, list):
        frames = video
        if len(frames) > DEFAULTS["max_frames"]:
            kept = np.linspace(0, len(frames) - 1, DEFAULTS["max_frames"], dtype=int)
            frames = [frames[i] for i in kept.tolist()]
        parts.append(
            {
                "type": "video",
                "video": ["file://" + f for f in frames],
                "total_pixels": DEFAULTS["total_pixels"],
            }
        )
    elif video is not None:
        parts.append(
            {"type": "video", "video": "file://" + video, "fps": fps, "max_frames": max_frames}
        )
    if image is not None:
        parts.append(
            {
                "type": "image",
                "image": "file://" + image,
                "min_pixels": DEFAULTS["min_pixels"],
                "max_pixels": DEFAULTS["max_pixels"],
            }
        )
    if text is not None:
        parts.append({"type": "text", "text": text})
    return parts


def messages(request: dict, document: dict) -> list[dict]:
    fps = request.get("fps", DEFAULTS["fps"])
    max_frames = request.get("max_frames", DEFAULTS["max_frames"])
    user = [{"type": "text", "text": "<Instruct>: " + request["instruction"]}]
    user += side(request["query"], "<Query>:", fps, max_frames)
    user += side(document, "\n<Document>:", fps, max_frames)
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
        {"role": "user", "content": user},
    ]


def reference_scores(model_dir: str, request: dict) -> tuple[list[float], bool]:
    from qwen_vl_utils import process_vision_info
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    full = Qwen3VLForConditionalGeneration.from_pretrained(model_dir).eval()
    tied = torch.equal(full.lm_head.weight, full.model.language_model.embed_tokens.weight)
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    vocab = processor.tokenizer.get_vocab()
    head = full.lm_head.weight[vocab["yes"]] - full.lm_head.weight[vocab["no"]]
    scores = []
    for document in request["documents"]:
        pair = messages(request, document)
        text = processor.apply_chat_template(pair, tokenize=False, add_generation_prompt=True)
        images, videos, video_kwargs = process_vision_info(
            [pair], image_patch_size=16, return_video_kwargs=True, return_video_metadata=True
        )
        metadata = None
        if videos is not None:
            videos, metadata = (list(x) for x in zip(*videos, strict=True))
        inputs = processor(
            text=[text],
            images=images,
            videos=videos,
            video_metadata=metadata,
            do_resize=False,
            return_tensors="pt",
            **video_kwargs,
        )
        with torch.no_grad():
            hidden = full.model(**inputs).last_hidden_state[0, -1]
        scores.append(torch.sigmoid(hidden @ head).item())
    return scores, tied


def vlsearch_scores(model_dir: str, request: dict) -> list[float]:
    from rerankers.qwen3_vl.seed import Qwen3VLReranker

    model = Qwen3VLReranker(model_dir, device="cpu", share_prefix=False, dedupe=False)
    return model.process(request)


def main() -> None:
    request = json.loads(sys.stdin.read())
    model_dir = request.pop("model")
    import transformers

    scores, tied = reference_scores(model_dir, request)
    print(
        json.dumps(
            {
                "transformers": transformers.__version__,
                "reference": scores,
                "vlsearch": vlsearch_scores(model_dir, request),
                "tied": tied,
                "files": sorted(p.name for p in Path(model_dir).iterdir()),
            }
        )
    )


if __name__ == "__main__":
    main()
