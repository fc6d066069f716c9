"""The training loop under torch.distributed: two CPU processes with the gloo backend."""

import os
import socket
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    from torch import nn
    from kdbench.train import TrainConfig, fit, init_distributed_from_env, distributed
    from kdbench.runner import is_main_process

    init_distributed_from_env()
    rank, world = distributed()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
        def forward(self, x, y):
            return nn.functional.mse_loss(self.model(x).squeeze(-1), y)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g)
    y = x.sum(-1)
    out = sys.argv[1]
    result = fit(Step(), (x, y), TrainConfig(epochs=3, batch_size=8, lr=1e-2, checkpoint_seconds=0),
                 checkpoint=os.path.join(out, "ck.pt"))
    torch.save([p.detach() for p in model.parameters()], os.path.join(out, f"rank{rank}.pt"))
    print("main" if is_main_process() else "worker", world, result.steps)
    torch.distributed.barrier()  # both ranks done before the group goes (gloo aborts else)
    torch.distributed.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_in_lockstep_and_only_rank_0_writes(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    assert outputs[0][0].split() == ["main", "2", "12"]  # 64 / 2 ranks / 8 = 4 steps x 3
    assert outputs[1][0].split() == ["worker", "2", "12"]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))  # gradients were synced
    assert (tmp_path / "ck.pt").exists()
