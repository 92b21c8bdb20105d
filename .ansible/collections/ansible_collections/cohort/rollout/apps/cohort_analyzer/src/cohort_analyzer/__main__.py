"""``python -m cohort_analyzer`` is the ``cohort-analyzer`` console script."""
from __future__ import annotations

import sys

from cohort_analyzer.cli import main

if __name__ == "__main__":
    sys.exit(main())
