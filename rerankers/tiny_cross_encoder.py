"""A tiny random-weight BERT cross-encoder, built offline, that ``CrossEncoder(path)`` loads.

It exercises every code path of the cross_encoder backend without a model hub,
but its weights are random: rankings made with it are meaningless.
"""

from __future__ import annotations

import string
from pathlib import Path

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CORPUS = [
    "a dog runs across the green field chasing a red ball",
    "two children play football on the beach at sunset",
    "a woman rides a bicycle down a busy city street",
    "the capital of france is paris and it lies on the seine",
    "what is the boiling point of water at sea level",
    "a man in a blue shirt climbs a steep rock wall",
    "photosynthesis turns light water and carbon dioxide into sugar",
    "how many legs does a spider have",
    "a black cat sleeps on a warm windowsill in the morning",
    "the quick brown fox jumps over the lazy dog",
]


def build_tiny_cross_encoder(out_dir: Path, seed: int = 0) -> Path:
    """Write a deterministic tiny BERT sequence classifier (one label) and its
    WordPiece tokenizer to ``out_dir``; returns the folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(
        tokenizer_object=_wordpiece_tokenizer(),
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    tokenizer.save_pretrained(out_dir)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
        # Wider than BERT's default so random scores spread out instead of all sitting at 0.5.
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(out_dir)
    return out_dir


def _wordpiece_tokenizer():
    """A WordPiece tokenizer whose vocabulary is the corpus's words and characters.

    Built from a sorted vocabulary rather than trained: the trainer breaks
    frequency ties in hash order, so two builds could differ."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    words = sorted({word for line in _CORPUS for word in line.split()})
    chars = sorted(
        {char for word in words for char in word} | set(string.digits + string.punctuation)
    )
    pieces = _SPECIAL + chars + [f"##{char}" for char in chars] + words
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tokenizer


__all__ = ["build_tiny_cross_encoder"]
