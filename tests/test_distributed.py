"""Tensor and expert parallel with torch.distributed: gloo, 2 and 4 real CPU processes (the
checks themselves are in parallel_checks.py; scripts/multi_gpu_check.py runs them on GPUs)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from parallel_checks import check_parallel


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, mode):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        check_parallel(mode, "cpu")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("mode", ["tp", "ep"])
def test_parallel_matches_single_rank(mode, world):
    mp.spawn(_worker, args=(world, _free_port(), mode), nprocs=world, join=True)
