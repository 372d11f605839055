"""bf16 autocast only where a GPU computes bf16 natively; the capability is mocked at torch's edge."""
import pytest
import torch

from trainables.precision import autocast_dtype, native_bf16

CUDA = torch.device("cuda", 0)


@pytest.fixture
def gpu(monkeypatch):
    """A fake GPU of a given compute capability, answering as torch.cuda does for that board:
    is_bf16_supported() is True with emulation everywhere, natively from sm_80 (Ampere) on."""
    def make(capability):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True: including_emulation or capability >= (8, 0))
    return make


@pytest.mark.parametrize("capability,native", [((7, 0), False), ((7, 5), False), ((8, 0), True), ((8, 6), True),
                                               ((9, 0), True)])
def test_bf16_autocast_only_on_native_gpus(gpu, capability, native):  # V100 7.0, T4 7.5, A100 8.0, H100 9.0
    gpu(capability)
    assert native_bf16(CUDA) is native
    assert autocast_dtype(True, CUDA) == (torch.bfloat16 if native else None)
    assert autocast_dtype(False, CUDA) is None


def test_the_cpu_answer_comes_from_onednn():
    expected = torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert native_bf16(torch.device("cpu")) is expected
