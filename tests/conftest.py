import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DL20 = ROOT.parent / "shared" / "data" / "trec-dl-2020-bm25-top100"
EMBEDDED = ROOT / "data" / "embedded"


@pytest.fixture(scope="session")
def dl20() -> Path:
    if not SHARED_DL20.is_dir():
        pytest.skip("../shared/data/trec-dl-2020-bm25-top100 is not beside this checkout")
    return SHARED_DL20


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    from trainables.tiny import build_tiny_model
    return build_tiny_model("bert", tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture(scope="module")
def ray_local():
    """A small local Ray instance for one test module; shut down after it, so CLI tests that
    start their own Ray (search.run) never meet it."""
    import ray
    from search.ray_session import RUNTIME_ENV, init_local_ray
    os.environ.update(RUNTIME_ENV)
    init_local_ray(num_cpus=2, log_to_driver=False)  # as search.run starts it, on 2 CPUs
    yield ray
    ray.shutdown()
