"""The epoch clock waits for the GPU's queued work before it reads the time."""
import torch

from trainables.throughput import synced_clock


def test_clock_synchronises_cuda_only(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    first = synced_clock(torch.device("cpu"))
    assert synced == []
    assert synced_clock(torch.device("cuda", 1)) >= first
    assert synced == [torch.device("cuda", 1)]
