"""Settings for turning documents (PDFs, text, Markdown) into indexable assets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DocumentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pdf_dpi: int = Field(default=144, ge=18, le=1200, description="PDF page render resolution.")
    max_pages: int | None = Field(
        default=None, ge=1, description="Index at most this many pages of each PDF; None: all."
    )
    max_page_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description=(
            "Pages that would render larger (posters, drawings) are rendered at a lower DPI "
            "to fit; keep it under media.max_image_pixels or the decoder refuses them."
        ),
    )
    passage_words: int = Field(default=200, ge=1, description="Word budget of one passage.")
    passage_overlap: int = Field(
        default=40, ge=0, description="Words shared by consecutive windows of a long paragraph."
    )
    section_prefix: bool = Field(
        default=True,
        description="Start each Markdown passage's text with its heading path ('A > B').",
    )

    @model_validator(mode="after")
    def _overlap_below_budget(self) -> DocumentsConfig:
        if self.passage_overlap >= self.passage_words:
            raise ValueError(
                f"passage_overlap ({self.passage_overlap}) must be smaller than "
                f"passage_words ({self.passage_words})"
            )
        return self
