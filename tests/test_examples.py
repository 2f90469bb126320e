"""Every example script runs end to end (few draws)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script, tmp_path):
    env = dict(os.environ, BAYESLMM_EXAMPLE_DRAWS="100", BAYESLMM_EXAMPLE_OUTPUT=str(tmp_path),
               MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(EXAMPLES / script)], cwd=EXAMPLES, env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()
    if script != "insteval.py":
        assert list(tmp_path.glob("*.png")), "the example saved no figure"
