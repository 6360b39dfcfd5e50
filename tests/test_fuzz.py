"""Hostile files (benchmarks/fuzz.py): CRC-valid mutations of every golden file end in an exact decode or
BitstreamError, never another exception, an abort, a hang or a large allocation."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fuzz(tmp_path, inputs: int, seed: int) -> dict:
    # a hang is a decode that takes a minute: on a busy 2-core machine a legitimate decode of a header's
    # largest allowed image can take more than the benchmark's default 10 s
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz.py"), "--inputs", str(inputs), "--seed",
                    str(seed), "--out", str(tmp_path), "--timeout", "60"], check=True)
    return json.loads((tmp_path / "fuzz.json").read_text())


def test_fuzz_quick(tmp_path):
    report = _fuzz(tmp_path, 340, seed=7)
    assert report["total"]["inputs"] >= 300
    assert report["total"]["other"] == 0, [r for r in report["codecs"] if r["other"]]
    assert report["total"]["BitstreamError"] > 0 and report["total"]["ok"] > 0  # the mutations reach both


@pytest.mark.slow
def test_fuzz_many(tmp_path):
    report = _fuzz(tmp_path, 20000, seed=11)
    assert report["total"]["other"] == 0, [r for r in report["codecs"] if r["other"]]
