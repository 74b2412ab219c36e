"""Documents into assets: PDF pages (image + text) and text/Markdown passages."""

from indexers.documents.config import DocumentsConfig
from indexers.documents.passages import MARKDOWN_SUFFIXES, iter_text_passages, split_passages
from indexers.documents.pdf import is_pdf, iter_pdf_pages, pdf_summary

__all__ = [
    "MARKDOWN_SUFFIXES",
    "DocumentsConfig",
    "is_pdf",
    "iter_pdf_pages",
    "iter_text_passages",
    "pdf_summary",
    "split_passages",
]
