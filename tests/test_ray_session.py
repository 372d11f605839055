"""search/ray_session.py: the environment of the Ray that search.run starts itself, and when it
joins a cluster instead (tests/test_cluster_job.py joins real ones)."""
import ast
import os
import sys
from pathlib import Path

import psutil
import ray

from search.ray_session import (JOB_CONFIG_VARIABLE, KEEP_FREED_PAGES, LOCAL_ENV, RUNTIME_ENV, allocator_env,
                                cluster_to_join, dashboard_modules, local_env)


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


def test_a_search_joins_the_cluster_its_address_ray_address_or_job_names_else_starts_its_own():
    assert cluster_to_join(None, {}) is None and cluster_to_join(None, {"RAY_ADDRESS": ""}) is None
    assert cluster_to_join(None, {"RAY_ADDRESS": "10.0.0.5:6379"}) == "auto"  # as ray.init() reads it
    assert cluster_to_join(None, {JOB_CONFIG_VARIABLE: "{}"}) == "auto"  # a job's driver
    assert cluster_to_join("ray://head:10001", {"RAY_ADDRESS": "10.0.0.5:6379"}) == "ray://head:10001"


def test_what_every_cluster_gets_holds_none_of_the_local_only_settings():
    local_only = {*LOCAL_ENV, *allocator_env({}), "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE"}
    assert not local_only & set(RUNTIME_ENV)


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
    session = ray._private.worker.global_worker.node.get_session_dir_path()
    dashboard = next(p for p in psutil.process_iter(["cmdline"])
                     if any(part.endswith("dashboard.py") for part in p.info["cmdline"] or [])
                     and any(session in part for part in p.info["cmdline"]))
    modules = {p.name() for p in dashboard.children(recursive=True) if p.name().startswith("ray-dashboard-")}
    assert modules == {"ray-dashboard-StateHead-0"}


def test_a_local_rays_workers_run_at_nice_0_on_jemalloc_and_know_its_state_api(ray_local):
    from ray.util.state import list_nodes

    def worker_view():
        return {**os.environ, "nice": os.nice(0),
                "jemalloc": any("libjemalloc" in line for line in open("/proc/self/maps"))}

    seen = ray.get(ray.remote(worker_view).remote())
    assert seen["nice"] == 0  # LOCAL_ENV: not Ray's default 15, below its own daemons
    assert seen["jemalloc"] or os.environ.get("LD_PRELOAD")  # allocator_env, unless the user preloads another
    assert seen["RAY_AUTH_MODE"] == "disabled"
    # The state API that Ray Train's placement-group cleaner polls answers there, whatever other
    # Ray instances run on this machine (a bare list_nodes() would refuse to pick one).
    assert len(list_nodes(address=seen["RAY_API_SERVER_ADDRESS"])) == 1
