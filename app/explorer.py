"""The Streamlit entry of the Pareto explorer: ``streamlit run app/explorer.py -- RUN_DIR``.

Thin on purpose: the page is ``autocompress.app.explorer`` (inside the package, so that an
installed ``autocompress explore`` has it too); this file only passes it the run named on the
command line (else the page picks one in ``$AUTOCOMPRESS_RUNS_DIR`` or ``runs/``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from autocompress.app.explorer import main

main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else None)
