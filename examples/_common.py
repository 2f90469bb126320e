"""Settings shared by the example scripts.

Set BAYESLMM_EXAMPLE_DRAWS (the test suite uses 100) for a quick run; figures go to
examples/output/ (or BAYESLMM_EXAMPLE_OUTPUT).
"""

import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))

DRAWS = int(os.environ.get("BAYESLMM_EXAMPLE_DRAWS", "1000"))
CHAINS = 4 if DRAWS >= 500 else 2
OUTPUT = Path(os.environ.get("BAYESLMM_EXAMPLE_OUTPUT", Path(__file__).parent / "output"))
OUTPUT.mkdir(parents=True, exist_ok=True)
SAMPLING = {"draws": DRAWS, "tune": DRAWS, "chains": CHAINS, "random_seed": 1,
            "progressbar": False}
