"""Text recall channels beside CLIP: ``bm25`` (lexical) and ``text_dense`` (semantic).

Importing this package loads neither bm25s nor sentence-transformers; each backend is
imported when a channel of its kind is created.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from indexers.text_channels.base import (
    CHANNELS_FOLDER,
    ChannelHit,
    ChannelNotFoundError,
    IncompatibleChannelError,
    TextChannel,
    TextChannelError,
    channel_directory,
)
from indexers.text_channels.config import (
    Bm25ChannelConfig,
    DenseTextChannelConfig,
    TextChannelConfig,
)
from indexers.text_channels.storage import CURRENT_FILE


def _bm25() -> type[TextChannel]:
    from indexers.text_channels.bm25 import Bm25Channel

    return Bm25Channel


def _text_dense() -> type[TextChannel]:
    from indexers.text_channels.dense import DenseTextChannel

    return DenseTextChannel


TEXT_CHANNELS: dict[str, Callable[[], type[TextChannel]]] = {
    "bm25": _bm25,
    "text_dense": _text_dense,
}


def text_channel_class(config: TextChannelConfig) -> type[TextChannel]:
    try:
        return TEXT_CHANNELS[config.backend]()
    except KeyError:
        known = ", ".join(sorted(TEXT_CHANNELS))
        raise ValueError(
            f"text channel backend {config.backend!r} is unknown; choose one of {known}"
        ) from None


def create_text_channel(config: TextChannelConfig) -> TextChannel:
    """A new, empty channel."""
    return text_channel_class(config)(config)  # type: ignore[call-arg]


def load_text_channel(index_directory: Path, config: TextChannelConfig) -> TextChannel:
    """The channel saved under ``index_directory/channels/<backend>/``."""
    channel_class = text_channel_class(config)
    return channel_class.load(channel_directory(index_directory, channel_class.name), config)


def open_text_channel(index_directory: Path, config: TextChannelConfig) -> TextChannel:
    """The saved channel, or a new empty one when none was ever saved there (a damaged
    one raises :class:`ChannelNotFoundError` rather than being replaced)."""
    channel_class = text_channel_class(config)
    if not (channel_directory(index_directory, channel_class.name) / CURRENT_FILE).is_file():
        return create_text_channel(config)
    return load_text_channel(index_directory, config)


def save_text_channel(index_directory: Path, channel: TextChannel) -> None:
    channel.save(channel_directory(index_directory, channel.name))


__all__ = [
    "CHANNELS_FOLDER",
    "TEXT_CHANNELS",
    "Bm25ChannelConfig",
    "ChannelHit",
    "ChannelNotFoundError",
    "DenseTextChannelConfig",
    "IncompatibleChannelError",
    "TextChannel",
    "TextChannelConfig",
    "TextChannelError",
    "channel_directory",
    "create_text_channel",
    "load_text_channel",
    "open_text_channel",
    "save_text_channel",
]
