"""Tensor and expert parallel on GPUs with NCCL, one process per GPU:

    NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \\
        torchrun --nproc_per_node=2 scripts/multi_gpu_check.py

(a) w2 sharded across the GPUs quantizes to exactly the unsharded int8 values and scales;
(b) the all-reduced tensor-parallel forward equals the single-GPU forward within tolerance;
(c) expert parallel with expert_map: the summed forward equals the single-GPU forward.
The checks are tests/parallel_checks.py, the same ones the gloo tests run on CPUs.
"""

import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from parallel_checks import check_parallel  # noqa: E402

# NVLink multicast stays off (shared machines): set before NCCL initializes.
for var, value in (("NCCL_NVLS_ENABLE", "0"), ("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1"),
                   ("NVSHMEM_DISABLE_NVLS", "1")):
    os.environ.setdefault(var, value)


def main():
    rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", device_id=torch.device("cuda", rank))
    try:
        for mode in ("tp", "ep"):
            err = check_parallel(mode, f"cuda:{rank}")
            dist.barrier()
            if dist.get_rank() == 0:
                print(f"{mode}: {dist.get_world_size()} GPUs ({torch.cuda.get_device_name()}), "
                      f"exact int8/scales{' ' if mode == 'tp' else ' n/a '}and summed output "
                      f"relative error {err:.2e}: PASS", flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
