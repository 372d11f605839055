"""search/ray_session.py: the environment of the Ray that search.run starts itself."""
import ast
import sys
from pathlib import Path

import psutil
import ray

from search.ray_session import (KEEP_FREED_PAGES, LOCAL_ENV, RUNTIME_ENV, allocator_env, dashboard_modules,
                                local_env)


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


def launched_arguments(process_type: str, tmp_path: Path) -> list[str]:
    """Arguments that Ray's own process launcher hands a process of this type (a tiny Python one)."""
    from ray._private import services
    out = tmp_path / f"{process_type}.txt"
    with out.open("w") as stdout:
        info = services.start_ray_process([sys.executable, "-c", "import sys; print(sys.argv[1:])"], process_type,
                                          fate_share=False, stdout_file=stdout)
        info.process.wait(timeout=60)
    return ast.literal_eval(out.read_text())


def test_dashboard_modules_extends_the_dashboards_command_only_and_only_inside_the_block(tmp_path):
    with dashboard_modules(("StateHead", "UsageStatsHead")):
        assert launched_arguments("dashboard", tmp_path) == ["--modules-to-load=StateHead,UsageStatsHead"]
        assert launched_arguments("log_monitor", tmp_path) == []
    assert launched_arguments("dashboard", tmp_path) == []
    with dashboard_modules(None):  # --full-ray-dashboard
        assert launched_arguments("dashboard", tmp_path) == []


def test_a_local_ray_runs_its_dashboard_with_the_state_api_module_alone(ray_local):
    from ray.util.state import list_nodes
    session = ray._private.worker.global_worker.node.get_session_dir_path()
    dashboard = next(p for p in psutil.process_iter(["cmdline"])
                     if any(part.endswith("dashboard.py") for part in p.info["cmdline"] or [])
                     and any(session in part for part in p.info["cmdline"]))
    modules = {p.name() for p in dashboard.children(recursive=True) if p.name().startswith("ray-dashboard-")}
    assert modules == {"ray-dashboard-StateHead-0"}
    assert len(list_nodes()) == 1  # the state API that Ray Train's placement-group cleaner polls answers
