"""``benchmarks/serve.py`` on a small setting end to end (``vlsearch serve`` in a child
process, a few queries, a short saturation run), so the benchmark cannot rot. Only that it
runs and states its three verdicts is checked: whether a shared machine meets the goals
is the benchmark's to report. It reads the Flickr8k photos in ../shared."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "flickr8k-1k"
VERDICTS = re.compile(r"^(PASS|FAIL): ", re.MULTILINE)


@pytest.mark.skipif(not (DATA / "captions.txt").is_file(), reason="no Flickr8k in ../shared")
def test_the_serve_benchmark_runs_and_states_its_verdicts(tmp_path: Path) -> None:
    argv = ["--workdir", str(tmp_path), "--queries", "10", "--rounds", "1", "--seconds", "3"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "serve.py"), *argv],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(VERDICTS.findall(done.stdout)) == 3, done.stdout
