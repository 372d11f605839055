"""The training step over real gloo process groups: any split of a global batch over workers and
micro-batches takes the same optimiser step as one worker on the whole batch."""
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import EMBEDDED

BATCH = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_step(rank, world_size, grad_accum, port, model_dir, out, loss="pointwise"):
    """One worker of a step: its share of the same 64 pairs (listwise: 16 groups of a positive and
    3 negatives), then rank 0 saves the parameters."""
    from torch.nn.parallel import DistributedDataParallel

    from trainables.data import RetrievalData, split_queries, training_pairs, worker_batches
    from trainables.groups import training_groups
    from trainables.loop import encode
    from trainables.models import load_reranker
    from trainables.step import StepSettings, train_step
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    data = RetrievalData.load(EMBEDDED)
    train, _ = split_queries(data, 0.2, seed=0)
    group = 4 if loss == "listwise" else 1
    pairs = (training_groups(data, train, 3, 20, 2, seed=0) if group > 1 else
             training_pairs(data, train, 3, 20, 2, False, seed=0))[:BATCH]
    torch.manual_seed(0)
    tokenizer, model = load_reranker(model_dir)
    model.eval()  # no dropout: the ranks' streams differ by design, the gradient must not
    ddp = DistributedDataParallel(model) if world_size > 1 else model
    micro = worker_batches(len(pairs), 0, 0, BATCH, grad_accum, rank, world_size, group=group)[0]
    texts = lambda m: ([data.queries[pairs[i].qid] for i in m], [data.collection[pairs[i].pid] for i in m],
                       [pairs[i].label for i in m])
    encoded = [encode(texts(m), tokenizer, 48, torch.device("cpu")) for m in micro]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # the update is minus the gradient itself
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loss = train_step(ddp, encoded, optimizer, scheduler, StepSettings(BATCH, world_size, loss=loss, group=group))
    dist.all_reduce(loss)
    if rank == 0:
        torch.save({"params": {k: v.detach().clone() for k, v in model.state_dict().items()},
                    "loss": loss.item() / world_size}, out)
    dist.destroy_process_group()


def step_with(world_size, grad_accum, model_dir, tmp_path, loss="pointwise"):
    out = tmp_path / f"w{world_size}a{grad_accum}{loss}.pt"
    mp.spawn(one_step, args=(world_size, grad_accum, free_port(), model_dir, out, loss), nprocs=world_size)
    return torch.load(out)


@pytest.fixture(scope="module")
def single(tiny_bert, tmp_path_factory):
    return step_with(1, 1, tiny_bert, tmp_path_factory.mktemp("single"))


@pytest.mark.parametrize("world_size,grad_accum", [(3, 1), (2, 2)])
def test_split_step_equals_one_worker_on_the_whole_batch(single, tiny_bert, tmp_path, world_size, grad_accum):
    from trainables.models import load_reranker
    split = step_with(world_size, grad_accum, tiny_bert, tmp_path)
    before = load_reranker(tiny_bert)[1].state_dict()
    moved = 0.0
    for name, value in single["params"].items():
        assert torch.allclose(split["params"][name], value, rtol=1e-4, atol=1e-6), name
        moved = max(moved, (value - before[name]).abs().max().item())
    assert moved > 1e-3  # the step really moved the weights, far beyond the tolerance
    assert split["loss"] == pytest.approx(single["loss"], rel=1e-5)  # the global batch's mean loss


def test_a_listwise_step_split_in_whole_groups_equals_one_worker(tiny_bert, tmp_path):
    # 16 groups over 3 workers: 6 + 5 + 5 groups, each worker's loss weighted by its share
    whole = step_with(1, 1, tiny_bert, tmp_path, loss="listwise")
    split = step_with(3, 1, tiny_bert, tmp_path, loss="listwise")
    for name, value in whole["params"].items():
        assert torch.allclose(split["params"][name], value, rtol=1e-4, atol=1e-6), name
    assert split["loss"] == pytest.approx(whole["loss"], rel=1e-5)
