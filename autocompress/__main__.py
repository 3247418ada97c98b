"""``python -m autocompress``: the same command as ``autocompress``."""

from autocompress.cli import run

run()
