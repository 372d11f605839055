import time
from types import SimpleNamespace

import pynvml
import pytest
import torch

from trainables.gpu import (GpuSampler, ModelDims, cuda_index, cuda_uuid, mfu, model_dims, nvml_target, peak_tflops,
                            torch_peak_memory_gb, training_flops_per_token, trapezoid_joules)


class FakeNvml:
    """One fake GPU behind the pynvml functions the sampler calls. Each reading follows its own
    sequence (one value per call); an exception in a sequence is raised at that call."""

    def __init__(self, monkeypatch, name="NVIDIA H100 80GB HBM3", **readings):
        self.name, self.readings = name, {key: list(values) for key, values in readings.items()}
        self.inits = self.shutdowns = 0
        self.handles = []
        for function, fake in dict(
                nvmlInit=self.init, nvmlShutdown=self.shutdown,
                nvmlDeviceGetHandleByIndex=lambda index: self.handle(("index", index)),
                nvmlDeviceGetHandleByUUID=lambda uuid: self.handle(("uuid", uuid)),
                nvmlDeviceGetName=lambda handle: self.name,
                nvmlDeviceGetUtilizationRates=lambda handle: SimpleNamespace(gpu=self.next("util"), memory=0),
                nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(used=self.next("mem")),
                nvmlDeviceGetPowerUsage=lambda handle: self.next("power"),
                nvmlDeviceGetClockInfo=lambda handle, kind: self.next("clock" if kind == pynvml.NVML_CLOCK_SM
                                                                      else "other clock"),
                nvmlDeviceGetTotalEnergyConsumption=lambda handle: self.next("energy")).items():
            monkeypatch.setattr(pynvml, function, fake)

    def init(self):
        self.inits += 1

    def shutdown(self):
        self.shutdowns += 1

    def handle(self, target):
        self.handles.append(target)
        return target

    def next(self, key):
        if key not in self.readings:
            raise pynvml.NVMLError_NotSupported()
        value = self.readings[key].pop(0)
        if isinstance(value, Exception):
            raise value
        return value


def clock(*times):
    return iter(times).__next__


READINGS = dict(  # the first value of each is the baseline that start() reads
    util=[0, 50, 70, 90, 20, 40],
    mem=[1e9, 2e9, 4e9, 3e9, 5e9, 1e9],
    power=[100_000, 200_000, 300_000, 400_000, 150_000, 250_000],
    clock=[1000, 1500, 1800, 1200, 900, 1100],
    energy=[5_000_000, 5_200_000, 5_500_000, 5_900_000, 6_400_000, 7_000_000],
)


@pytest.fixture(autouse=True)
def no_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def started(device_index=0, times=(0, 1, 2, 3, 4, 6)):
    # An hour between samples keeps the thread asleep: the test drives sampling itself.
    return GpuSampler(device_index, interval_s=3600, clock=clock(*times)).start()


def test_epoch_stats_aggregate_each_window(monkeypatch):
    nvml = FakeNvml(monkeypatch, **READINGS)
    sampler = started()
    assert sampler.available and sampler.device_name == "NVIDIA H100 80GB HBM3"
    assert [sampler.sample_once() for _ in range(3)] == [True] * 3
    assert sampler.epoch_stats() == {
        "gpu_util_mean": 70.0, "gpu_util_max": 90.0, "gpu_mem_mean_gb": 3.0, "gpu_mem_peak_gb": 4.0,
        "gpu_power_mean_w": 300.0, "energy_kj": 0.9, "sm_clock_mean_mhz": 1500.0}
    sampler.sample_once(), sampler.sample_once()
    second = sampler.epoch_stats()
    # The second window's energy starts where the first ended (5.9 MJ counter → 7.0).
    assert second["energy_kj"] == pytest.approx(1.1) and second["gpu_util_mean"] == 30.0
    assert sampler.epoch_stats() == {}  # nothing sampled since
    sampler.stop()
    assert (nvml.inits, nvml.shutdowns) == (1, 1)
    assert sampler.sample_once() is False


def test_energy_integrates_power_without_an_energy_counter(monkeypatch):
    readings = {key: values for key, values in READINGS.items() if key != "energy"}
    FakeNvml(monkeypatch, **readings)
    with GpuSampler(0, interval_s=3600, clock=clock(0, 1, 3)) as sampler:
        sampler.sample_once(), sampler.sample_once()
        stats = sampler.epoch_stats()
    # Trapezoids from the baseline: (100+200)/2 W × 1 s + (200+300)/2 W × 2 s = 650 J.
    assert stats["energy_kj"] == pytest.approx(0.65)
    assert stats["gpu_power_mean_w"] == 250.0


def test_unsupported_readings_are_left_out(monkeypatch):
    FakeNvml(monkeypatch, mem=[1e9, 2e9, 6e9])  # e.g. a MIG slice: memory only
    sampler = started()
    sampler.sample_once(), sampler.sample_once()
    assert sampler.epoch_stats() == {"gpu_mem_mean_gb": 4.0, "gpu_mem_peak_gb": 6.0}
    sampler.stop()


def test_no_reading_at_all_means_unavailable(monkeypatch):
    nvml = FakeNvml(monkeypatch)
    sampler = started()
    assert not sampler.available and "no metrics" in sampler.unavailable_reason
    assert sampler.epoch_stats() == {}
    sampler.stop()
    assert (nvml.inits, nvml.shutdowns) == (1, 1)


def test_sampling_error_stops_sampling_without_raising(monkeypatch):
    lost = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
    nvml = FakeNvml(monkeypatch, **{**READINGS, "util": [0, 50, lost]})
    sampler = started()
    assert sampler.sample_once() is True
    assert sampler.sample_once() is False
    assert not sampler.available and sampler.unavailable_reason == "sampling stopped: NVMLError_GpuIsLost"
    assert sampler.sample_once() is False  # no further NVML calls
    assert sampler.epoch_stats() == {}
    sampler.stop()
    assert (nvml.inits, nvml.shutdowns) == (1, 1)


def test_the_thread_samples_and_stops(monkeypatch):
    n = 10_000
    nvml = FakeNvml(monkeypatch, util=[60] * n, mem=[2e9] * n)
    sampler = GpuSampler(0, interval_s=0.001).start()
    deadline = time.monotonic() + 5
    while len(nvml.readings["util"]) > n - 4 and time.monotonic() < deadline:  # baseline + 3 samples
        time.sleep(0.005)
    sampler.stop()
    assert sampler._thread is None
    stats = sampler.epoch_stats()
    assert stats["gpu_util_mean"] == 60.0 and stats["gpu_mem_peak_gb"] == 2.0


@pytest.mark.parametrize("visible,index,target", [
    (None, 1, 1), ("3,1", 0, 3), ("3, 1", 1, 1),
    ("GPU-aaaa,GPU-bbbb", 1, "GPU-bbbb"), ("MIG-cccc", 0, "MIG-cccc")])
def test_nvml_target_follows_cuda_visible_devices(visible, index, target):
    assert nvml_target(index, visible) == target


@pytest.mark.parametrize("visible", ["0", "", "0,nonsense"])
def test_nvml_target_rejects_devices_cuda_cannot_see(visible):
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
        nvml_target(1, visible)


@pytest.mark.parametrize("visible,handle", [
    ("2,5", ("index", 5)), ("GPU-aaaa,GPU-bbbb", ("uuid", "GPU-bbbb"))])
def test_sampler_opens_the_handle_of_its_visible_device(monkeypatch, visible, handle):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    nvml = FakeNvml(monkeypatch, **READINGS)
    started(device_index=1).stop()
    assert nvml.handles == [handle]


def test_device_outside_visible_devices_is_unavailable_without_nvml(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    nvml = FakeNvml(monkeypatch, **READINGS)
    sampler = started(device_index=1)
    assert not sampler.available and "CUDA_VISIBLE_DEVICES" in sampler.unavailable_reason
    sampler.stop()
    assert (nvml.inits, nvml.shutdowns) == (0, 0)


def test_handle_lookup_failure_still_shuts_nvml_down(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-gone")
    nvml = FakeNvml(monkeypatch, **READINGS)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByUUID",
                        lambda uuid: (_ for _ in ()).throw(pynvml.NVMLError_NotFound()))
    sampler = started()
    assert sampler.unavailable_reason == "no GPU: NVMLError_NotFound"
    assert (nvml.inits, nvml.shutdowns) == (1, 1)


def test_cpu_training_is_unavailable():
    with GpuSampler(None) as sampler:
        assert sampler.unavailable_reason == "no GPU: training on CPU"
        assert sampler.sample_once() is False and sampler.epoch_stats() == {}


def test_real_nvml_without_a_gpu():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA driver")
    with GpuSampler(0) as sampler:
        assert not sampler.available
        assert sampler.unavailable_reason.startswith("no GPU: NVMLError_")  # LibraryNotFound here
        assert sampler.epoch_stats() == {}


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H200", 989.5), ("NVIDIA H200 NVL", 835.5), ("NVIDIA GH200 480GB", 989.5),
    ("NVIDIA H100 80GB HBM3", 989.5), ("NVIDIA H100 PCIe", 756.5), ("NVIDIA H100 NVL", 835.5),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100-PCIE-40GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0),
    ("NVIDIA A10G", 125.0), ("NVIDIA A10", 125.0), ("NVIDIA L4", 121.0), ("NVIDIA L40", 181.05),
    ("NVIDIA L40S", 362.05), ("Tesla V100-SXM2-16GB", 125.0), ("Tesla V100-PCIE-32GB", 112.0),
    ("Tesla V100S-PCIE-32GB", 130.0), ("Tesla T4", 65.0), ("NVIDIA GeForce RTX 4090", 165.2),
    ("NVIDIA GeForce RTX 3090", 71.0), ("NVIDIA RTX A6000", 154.8),
    ("NVIDIA RTX A4000", None), ("NVIDIA GeForce GTX 1080", None), ("", None), (None, None)])
def test_peak_tflops(name, peak):
    assert peak_tflops(name) == peak


def test_flops_and_mfu_by_hand():
    # MiniLM-L6-sized: N = 21.3M non-embedding params, L = 6, H = 384, S = 256.
    per_token = training_flops_per_token(21_300_000, 6, 384, 256)
    assert per_token == 127_800_000 + 7_077_888  # 6·N + 12·6·384·256
    # 10,000 tokens/s on 2 × A100 (624 TFLOPS together).
    assert mfu(10_000, per_token, 2 * 312.0) == pytest.approx(134_877_888e4 / 624e12)
    assert mfu(10_000, per_token, None) is None


def test_trapezoid():
    assert trapezoid_joules([0, 2, 3], [100, 300, 300]) == 400 + 300
    assert trapezoid_joules([5], [100]) == 0


def test_model_dims_leaves_out_embeddings():
    import transformers
    config = transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=3,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=64, type_vocab_size=2, num_labels=1)
    model = transformers.BertForSequenceClassification(config)
    total = sum(p.numel() for p in model.parameters())
    assert model_dims(model) == ModelDims(total - (100 + 64 + 2) * 16, 3, 16)
    assert model_dims(SimpleNamespace(module=model)) == model_dims(model)  # DDP-wrapped


def test_cuda_index_and_torch_peak_on_cpu():
    assert cuda_index(torch.device("cpu")) is None
    assert cuda_index(torch.device("cuda", 2)) == 2
    assert torch_peak_memory_gb(torch.device("cpu")) == {}


def test_sampler_opens_the_uuid_cuda_reports_for_its_device(monkeypatch):
    # CUDA may number GPUs unlike NVML (fastest first): the UUID CUDA gives names the board itself.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: asked.append(index) or SimpleNamespace(uuid="58ea1c2e-7d3f"))
    nvml = FakeNvml(monkeypatch, **READINGS)
    started(device_index=1).stop()
    assert asked == [1] and nvml.handles == [("uuid", "GPU-58ea1c2e-7d3f")]
    assert cuda_uuid(1) == "GPU-58ea1c2e-7d3f"


def test_cuda_uuid_is_none_without_cuda():
    assert cuda_uuid(0) is None  # this CPU build: the sampler falls back to CUDA_VISIBLE_DEVICES
