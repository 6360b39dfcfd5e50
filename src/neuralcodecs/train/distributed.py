"""Data-parallel training under torchrun: the same loop on every process, gradients averaged between them.

    torchrun --nproc_per_node N -m neuralcodecs train CODEC ...    (gloo on CPUs, nccl on GPUs)

Each process (rank) draws its own crops (its data generator is seeded by the seed, its rank and the step)
and the batch is per process, so a step sees N x batch crops. After backward every gradient is averaged over
the processes (one all-reduce per tensor: simpler than DistributedDataParallel's buckets, and it needs no
wrapper around the model's own loss), so the optimizers, which start from the same weights, stay identical everywhere. Only rank 0 writes checkpoints
and logs. Without torchrun (WORLD_SIZE unset) `Ranks()` is the one process and every collective is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @staticmethod
    def from_environment(device: str) -> "Ranks":
        """This process's place under torchrun (the process group started), or a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return Ranks()
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda"):
            torch.cuda.set_device(local)  # before the group starts: its collectives run on this process's GPU
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return Ranks(dist.get_rank(), world, local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """Each process its own GPU (cuda:LOCAL_RANK) when the device is a GPU."""
        return f"cuda:{self.local}" if self.world > 1 and device == "cuda" else device

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def broadcast(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere (so every process starts from the same weights)."""
        if self.world > 1:
            for t in module.state_dict().values():
                torch.distributed.broadcast(t, 0)

    def everywhere(self, holds: bool, device: torch.device | str = "cpu") -> bool:
        """Whether `holds` is true on every process, so that all of them take the same branch (skip a step with
        a non-finite loss, stop); `device`: where the backend's collectives run (nccl has no CPU tensors)."""
        if self.world == 1:
            return holds
        flag = torch.tensor([1.0 if holds else 0.0], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item() > 0)

    def average(self, params) -> None:
        """Average the gradients of `params` over the processes. A parameter no process has a gradient for
        keeps none (Adam then leaves it alone, as one process would); one that only some processes have a
        gradient for counts zero on the others. Frozen parameters are left alone, on every process alike."""
        if self.world == 1:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        has = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
        torch.distributed.all_reduce(has, op=torch.distributed.ReduceOp.MAX)  # the same list on every process
        for p, any_grad in zip(params, has.tolist()):
            if not any_grad:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(self.world)

    def check_in_step(self, module: torch.nn.Module) -> None:
        """Raise if the processes' weights differ (they must not: same start, same averaged updates)."""
        if self.world == 1:
            return
        total = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum().view(1)
        lo, hi = total.clone(), total.clone()
        torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
        torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
        if float(hi - lo) != 0.0:
            raise RuntimeError(f"the {self.world} training processes' weights differ")

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
