from autocompress.cli import run

run()
