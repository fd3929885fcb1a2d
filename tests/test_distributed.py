"""One run on several processes: DDP syncs only the trainable parameters, and torchrun runs end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from bench import distributed
    from bench.pipelines import ddp
    from methods import create_model

    torch.set_num_threads(1)
    distributed.init("cpu")
    torch.manual_seed(0)
    model = create_model("tpmamba", size="smoke", roi_size=(16, 16, 16))  # the smallest crop it takes: DDP is the subject
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    network = ddp.wrap(model, "cpu", (1, 1, 16, 16, 8))
    synced = []

    def counting_hook(state, bucket):  # every gradient element DDP all-reduces passes through here
        synced.append(bucket.buffer().numel())
        return allreduce_hook(None, bucket)

    network.register_comm_hook(None, counting_hook)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    generator = torch.Generator().manual_seed(100 + rank)  # each rank its own batch
    for _ in range(2):
        image = torch.randn(1, 1, 16, 16, 16, generator=generator)
        label = torch.randint(0, 14, (1, 16, 16, 16), generator=generator)
        loss = torch.nn.functional.cross_entropy(network(image), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    named = dict(model.named_parameters())
    report = {
        "synced_per_step": sum(synced) // 2,
        "trainable": sum(p.numel() for p in trainable_before.values()),
        "frozen": sum(p.numel() for p in frozen_before.values()),
        "frozen_unchanged": all(torch.equal(named[n], p) for n, p in frozen_before.items()),
        "trainable_moved": any(not torch.equal(named[n], p) for n, p in trainable_before.items()),
        "trainable_sum": float(sum(p.double().sum() for n, p in named.items() if n in trainable_before)),
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(report, fh)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_all_reduces_the_adapters_but_never_the_frozen_backbone(tmp_path):
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert first["frozen"] > 0 and first["frozen_unchanged"] and second["frozen_unchanged"]
    # exactly the trainable elements cross the wire each step, none of the frozen ViT
    assert first["synced_per_step"] == first["trainable"] == second["synced_per_step"]
    # different batches on each rank, yet the same weights after the steps: gradients were averaged
    assert first["trainable_moved"] and first["trainable_sum"] == second["trainable_sum"]


@pytest.mark.slow
def test_bench_run_under_torchrun_writes_a_run_like_a_single_process(tiny_synthetic, tmp_path):
    out = tmp_path / "runs"
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    args += ["-m", "bench.cli", "run", "--methods", "masam", "--data", "12pct", "--repeats", "0", "--epochs", "1"]
    args += ["--profile", "smoke", "--device", "cpu", "--data-root", str(tiny_synthetic), "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results:") == 1  # rank 0 speaks for the run
    run_dir = out / "12pct" / "masam" / "repeat0"
    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert config["processes"] == 2 and summary["processes"] == 2
    assert [json.loads(line)["epoch"] for line in (run_dir / "log.jsonl").read_text().splitlines()] == [1]
    assert [c["case"] for c in summary["metric_per_case"]] == ["0035", "0036", "0037", "0038", "0039", "0040"]
    assert set(summary["mean"]) == set(summary["metric_per_case"][0]["metrics"]) and (out / "report" / "report.html").exists()


@pytest.mark.parametrize(
    ("name", "options", "unused"), [("unetr", {}, True), ("nnunet", {}, True), ("masam", {}, False), ("vnet", {}, False)]
)
def test_ddp_is_told_of_unused_parameters_only_where_there_are_some(name, options, unused):
    from bench.pipelines.ddp import unused_trainable_parameters
    from methods import create_model

    model = create_model(name, size="smoke", roi_size=(32, 32, 32))
    found = unused_trainable_parameters(model, (2, 1, 32, 32, 32))
    assert found is not None and bool(found) == unused
    if name == "nnunet":  # the deep-supervision heads of a U-Net trained without deep supervision
        assert all(n.startswith("decoder.seg_layers.") for n in found)
        with_heads = create_model(name, size="smoke", roi_size=(32, 32, 32), deep_supervision=True)
        # with deep supervision only the lowest resolution's head is idle: nnU-Net weights it 0
        assert unused_trainable_parameters(with_heads, (2, 1, 32, 32, 32)) == ["decoder.seg_layers.0.weight", "decoder.seg_layers.0.bias"]
