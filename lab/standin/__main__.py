"""``python -m lab.standin OUTPUT_DIR``: build the stand-in installer (see the package)."""

from . import main

main()
