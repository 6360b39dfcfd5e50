"""The training loop under torchrun: two CPU processes (gloo) train in step and rank 0 writes the checkpoint."""
import subprocess
import sys

import torch

from conftest import ROOT


def test_two_processes_train_in_step(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "neuralcodecs",
           "train", "balle2017", "--data", str(ROOT / "samples"), "--out", str(out), "--steps", "3", "--batch", "2",
           "--crop", "64", "--threads", "1", "--checkpoint-minutes", "100"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "process 1 of 2" in run.stdout + run.stderr
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["step"] == 3  # the loop's end checked that both processes' weights agree (check_in_step)
