"""search/ray_session.py: the environment of the Ray that search.run starts itself."""
from pathlib import Path

import ray

from search.ray_session import KEEP_FREED_PAGES, LOCAL_ENV, RUNTIME_ENV, allocator_env, local_env


def test_workers_get_rays_own_jemalloc_keeping_freed_pages():
    env = allocator_env({})
    assert Path(env["LD_PRELOAD"]) == Path(ray.__file__).parent / "core" / "libjemalloc.so"
    assert Path(env["LD_PRELOAD"]).is_file()
    assert env["MALLOC_CONF"] == KEEP_FREED_PAGES


def test_a_preload_the_user_chose_is_kept():
    assert allocator_env({"LD_PRELOAD": "/usr/lib/libtcmalloc.so"}) == {}


def test_local_env_joins_the_shared_local_and_allocator_settings_and_names_its_dashboard():
    env = local_env(8265)
    assert env.items() >= {**RUNTIME_ENV, **LOCAL_ENV}.items()
    assert env["RAY_API_SERVER_ADDRESS"] == "http://127.0.0.1:8265"
