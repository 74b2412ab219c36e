"""``python -m pipeline`` runs the ``vlsearch`` command."""

from pipeline.cli import app

app(prog_name="vlsearch")
