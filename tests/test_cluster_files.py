"""cluster/: configs that Ray and KubeRay accept, commands that search.run accepts, and an MLflow
server script that refuses bad flags and really serves."""
import copy
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from search.ray_session import free_port
from tests.mlflow_store import wait_healthy

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
SCRIPT = CLUSTER / "mlflow_server.sh"


def load(name: str):
    return yaml.safe_load((CLUSTER / name).read_text())


def entry_args(argv: list[str]) -> list[str]:
    """The arguments after `python -m search.run` in a command line."""
    i = argv.index("search.run")
    assert argv[i - 2:i] == ["python", "-m"], argv
    return argv[i + 1:]


def parse(args: list[str]):
    from search.run import parse_args
    if "--resume" in args:
        try:
            parse_args(["--space", "minilm", "--resume"])
        except SystemExit:
            pytest.skip("search.run has no --resume yet")
    return parse_args(args)


def readme_submit_commands() -> list[list[str]]:
    text = (CLUSTER / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.strip().startswith("ray job submit"):
                commands.append(shlex.split(line, comments=True))
    return commands


def test_every_yaml_parses():
    paths = sorted(CLUSTER.rglob("*.yaml"))
    assert len(paths) >= 6
    for path in paths:
        docs = list(yaml.safe_load_all(path.read_text()))
        assert docs and all(isinstance(d, dict) for d in docs), path


def test_launcher_config_is_valid_and_fixed_size():
    from ray.autoscaler._private.util import prepare_config, validate_config
    config = load("cluster.yaml")
    validate_config(prepare_config(copy.deepcopy(config)))
    head = config["head_node_type"]
    workers = [t for name, t in config["available_node_types"].items() if name != head]
    # the search plans once from the GPUs present at its start: no autoscaling pool
    assert workers and all(t["min_workers"] == t["max_workers"] for t in workers)
    assert config["available_node_types"][head]["resources"] == {"CPU": 0, "GPU": 0}
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "--num-cpus=0" in start
    assert all("RAY_USAGE_STATS_ENABLED=0" in c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"]
               if "ray start" in c)


@pytest.mark.parametrize("text", [
    "\n".join(load("cluster.yaml")["setup_commands"]),
    (CLUSTER / "Dockerfile").read_text(),
])
def test_install_follows_the_makefile(text):
    # torch first and pinned, then the project under constraints.txt
    # (postgres: psycopg2 for MLflow's PostgreSQL backend)
    install = '-c constraints.txt -e ".[bm25,postgres]"'
    assert "torch==" in text and install in text
    assert text.index("torch==") < text.index(install)


def test_runtime_env_is_accepted_by_ray():
    from ray.runtime_env import RuntimeEnv
    from search.ray_session import RUNTIME_ENV
    spec = load("runtime_env.yaml")
    env = RuntimeEnv(**spec)
    assert env["working_dir"] == "."
    assert {".venv/", "runs/"} <= set(spec["excludes"])
    assert spec["env_vars"]["HF_HUB_OFFLINE"] == "1"
    # search.run passes its own runtime_env to ray.init; Ray merges a job's and a driver's that
    # name the same variable only when told to, else the job fails at ray.init.
    if set(spec["env_vars"]) & set(RUNTIME_ENV):
        assert spec["env_vars"]["RAY_OVERRIDE_JOB_RUNTIME_ENV"] == "1"


def test_runtime_env_package_leaves_out_the_venv(tmp_path):
    # what `ray job submit` uploads from the repository root
    from ray._private.runtime_env.packaging import create_package
    spec = load("runtime_env.yaml")
    package = tmp_path / "package.zip"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        create_package(spec["working_dir"], package, include_parent_dir=False, excludes=spec["excludes"],
                       include_gitignore=True)
    finally:
        os.chdir(cwd)
    names = zipfile.ZipFile(package).namelist()
    assert "search/run.py" in names and "cluster/runtime_env.yaml" in names
    assert not any(n.startswith((".venv/", "runs/")) or "__pycache__" in n for n in names)
    assert package.stat().st_size < 100 * 2**20


def test_readme_has_submit_and_resume_commands():
    commands = readme_submit_commands()
    assert len(commands) >= 2
    assert any("--resume" in c for c in commands)


@pytest.mark.parametrize("argv", readme_submit_commands(), ids=lambda a: "resume" if "--resume" in a else "submit")
def test_readme_submit_commands_parse(argv):
    from spaces import names
    dash = argv.index("--")
    options = argv[:dash]
    assert options[options.index("--runtime-env") + 1] == "cluster/runtime_env.yaml"
    assert (ROOT / "cluster/runtime_env.yaml").is_file()
    args = parse(entry_args(argv[dash + 1:]))
    assert args.space in names()
    assert args.address == "auto"            # the running cluster, also when typed on the head
    assert str(args.storage).startswith("/shared/") and str(args.data).startswith("/shared/")


def test_rayjob_entrypoint_parses_and_carries_the_cluster_spec():
    job, cluster = load("kuberay/rayjob.yaml"), load("kuberay/raycluster.yaml")
    assert job["apiVersion"] == cluster["apiVersion"] == "ray.io/v1"
    args = parse(entry_args(shlex.split(job["spec"]["entrypoint"])))
    assert (args.space, args.address, args.mlflow_uri) == ("modernbert", "auto", "http://mlflow:5000")
    assert (args.data, args.storage) == (Path("/data/msmarco"), Path("/shared/runs"))
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]   # one spec, two files: no drift


def test_raycluster_workers_request_gpus_and_mount_shared_storage():
    from search.resources import plan
    spec = load("kuberay/raycluster.yaml")["spec"]
    assert spec["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0", "num-gpus": "0"}
    pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    for pod in pods:
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert {"/data", "/shared"} <= mounts
    cpus = gpus = 0
    for group in spec["workerGroupSpecs"]:
        assert group["replicas"] == group["minReplicas"] == group["maxReplicas"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
        cpus += group["replicas"] * int(limits["cpu"])
        gpus += group["replicas"] * int(limits["nvidia.com/gpu"])
    # the plan search.run makes for this cluster fits each pod: one whole trial per pod
    resources = plan(cpus, gpus, None, None, None)
    assert resources.use_gpu and resources.concurrency >= 1
    for group in spec["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["cpu"]) >= resources.num_workers * resources.cpus_per_worker


def run_script(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30, env=env)


@pytest.mark.parametrize("args", [["--bogus"], ["--port"], ["--port", "http"], ["--workers", "0"],
                                  ["--backend", "mysql://db/mlflow"],
                                  ["--backend", "postgresql://user:hunter2@db/mlflow"],
                                  ["--backend", "postgresql"]])
def test_mlflow_script_rejects_bad_flags(args, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_BACKEND_STORE_URI"}
    result = run_script("--dir", str(tmp_path), *args, env=env)
    assert result.returncode == 2, result.stderr
    assert "usage:" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_mlflow_script_warns_before_binding_all_interfaces(tmp_path):
    path = "/usr/bin:/bin"
    if shutil.which("mlflow", path=path):
        pytest.skip("an mlflow outside the venv would really start")
    # no mlflow on this PATH: the script stops (exit 1) right after its checks and warning
    result = run_script("--dir", str(tmp_path), "--host", "0.0.0.0", env={**os.environ, "PATH": path})
    assert result.returncode == 1
    assert "WARNING" in result.stderr and "no authentication" in result.stderr


def test_mlflow_script_serves_on_localhost(tmp_path):
    port, log = free_port(), tmp_path / "server.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with open(log, "w") as out:
        proc = subprocess.Popen(["bash", str(SCRIPT), "--dir", str(tmp_path / "mlflow"), "--port", str(port),
                                 "--workers", "1"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", log, 60)
        # the store URI reaches mlflow through its environment, never its command line
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        if cmdline.exists():
            argv = cmdline.read_bytes().split(b"\0")
            assert b"127.0.0.1" in argv and not any(b"sqlite" in a for a in argv)
        # artifacts go through the server into its destination, as the driver's do
        from search import tracking
        client, experiment_id = tracking.connect(f"http://127.0.0.1:{port}", "cluster-check", tmp_path)
        run = client.create_run(experiment_id)
        (tmp_path / "note.txt").write_text("served")
        client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
        assert [p.read_text() for p in (tmp_path / "mlflow" / "artifacts").rglob("note.txt")] == ["served"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)   # the server and its workers share the script's group
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # anything of the group that outlived SIGTERM
        except ProcessLookupError:
            pass
        proc.wait()


def ray_pin() -> str:
    return re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)


def test_ray_version_is_set_in_constraints_only():
    import importlib.metadata
    pin = ray_pin()
    assert importlib.metadata.version("ray") == pin            # what the tests ran against
    for name in ("kuberay/raycluster.yaml", "kuberay/rayjob.yaml"):
        spec = load(name)["spec"]
        assert spec.get("rayClusterSpec", spec)["rayVersion"] == pin, name
    texts = {p: p.read_text() for p in [ROOT / "README.md", CLUSTER / "README.md", CLUSTER / "Dockerfile",
                                         CLUSTER / "cluster.yaml"]}
    for path, text in texts.items():
        # any Ray version written out must be the pin; installs take it from constraints.txt
        written = re.findall(r"\bray(?:\[[\w,]+\])?==([\w.]+)", text)
        assert set(written) <= {pin}, (path, written)
    assert all("-c constraints.txt" in texts[CLUSTER / f] for f in ("Dockerfile", "cluster.yaml"))


def kube_documents():
    for path in sorted((CLUSTER / "kuberay").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["apiVersion"].startswith("ray.io/"):   # no schema ships for KubeRay's CRDs: check their pods
                spec = doc["spec"].get("rayClusterSpec", doc["spec"])
                groups = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
                for i, group in enumerate(groups):
                    yield f"{path.name}:{doc['kind']}:pod{i}", {"apiVersion": "v1", "kind": "Pod",
                                                              "metadata": {"name": "p"}, **group["template"]}
            else:
                yield f"{path.name}:{doc['kind']}:{doc['metadata']['name']}", doc


@pytest.mark.parametrize("name, doc", list(kube_documents()), ids=lambda v: v if isinstance(v, str) else "")
def test_manifests_match_kubernetes_schemas(name, doc):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")   # the test extra; schemas ship in it
    kubernetes_validate.validate(doc, "1.33", strict=True)


def test_networkpolicy_admits_only_ray_pods_submitter_and_operator():
    policies = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all((CLUSTER / "kuberay/networkpolicy.yaml").read_text())}
    ray, mlflow = policies["rerank-ray"], policies["mlflow"]
    job = load("kuberay/rayjob.yaml")
    ray_pods = ray["podSelector"]["matchLabels"]
    # every Ray pod of both manifests carries the selected labels (KubeRay adds ray.io/is-ray-node)
    for spec in (load("kuberay/raycluster.yaml")["spec"], job["spec"]["rayClusterSpec"]):
        for group in [spec["headGroupSpec"]] + spec["workerGroupSpecs"]:
            labels = {**group["template"]["metadata"]["labels"], "ray.io/is-ray-node": "yes"}
            assert ray_pods.items() <= labels.items()
    among, api = ray["ingress"]
    assert among == {"from": [{"podSelector": {"matchLabels": ray_pods}}]}        # Ray pods, every port
    assert api["ports"] == [{"protocol": "TCP", "port": 8265}]                    # others: the job API only
    submitter, operator = (peer["podSelector"]["matchLabels"] for peer in api["from"])
    assert submitter == {"ray.io/originated-from-crd": "RayJob", "ray.io/originated-from-cr-name": job["metadata"]["name"]}
    assert "namespaceSelector" in api["from"][1] and operator == {"app.kubernetes.io/component": "kuberay-operator"}
    deployment = next(d for d in yaml.safe_load_all((CLUSTER / "kuberay/mlflow.yaml").read_text()) if d["kind"] == "Deployment")
    assert mlflow["podSelector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert mlflow["ingress"] == [{"from": [{"podSelector": {"matchLabels": ray_pods}}],
                                  "ports": [{"protocol": "TCP", "port": port}]}]
    assert all(p["policyTypes"] == ["Ingress"] for p in policies.values())


def test_rayjob_frees_its_gpus_soon_and_says_how_to_resume():
    text = (CLUSTER / "kuberay/rayjob.yaml").read_text()
    job = load("kuberay/rayjob.yaml")["spec"]
    assert job["ttlSecondsAfterFinished"] <= 600
    # KubeRay never reruns a finished RayJob: delete, then apply with --resume
    assert text.index("kubectl delete rayjob") < text.index("--resume") < text.index("apiVersion")
    gpus = sum(g["replicas"] * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
               for g in job["rayClusterSpec"]["workerGroupSpecs"])
    args = entry_args(shlex.split(job["entrypoint"]))
    assert args[args.index("--expect-gpus") + 1] == str(gpus)


def test_every_volume_claim_names_a_storage_class_marked_change():
    for path in (CLUSTER / "kuberay").glob("*.yaml"):
        text = path.read_text()
        claims = [d for d in yaml.safe_load_all(text) if d["kind"] == "PersistentVolumeClaim"]
        assert all(c["spec"].get("storageClassName") for c in claims), path
        lines = [line for line in text.splitlines() if "storageClassName:" in line]
        assert len(lines) == len(claims) and all("CHANGE" in line for line in lines), path


def test_readmes_apply_named_manifests_only():
    for path in (ROOT / "README.md", CLUSTER / "README.md"):
        # a directory would start both the RayCluster and the RayJob's cluster
        text = re.sub(r"\\?\n\s*", " ", path.read_text())
        targets = re.findall(r"-f ([\w./-]+)", " ".join(re.findall(r"kubectl (?:apply|delete)((?: -f [^\s`,]+)+)", text)))
        assert targets, path
        for target in targets:
            assert target.endswith(".yaml") and (ROOT / target).is_file(), (path, target)


def test_mlflow_script_asks_for_the_postgres_extra_without_psycopg2(tmp_path):
    import importlib.util
    if importlib.util.find_spec("psycopg2"):
        pytest.skip("psycopg2 is installed here")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow@db/mlflow"}
    result = run_script("--dir", str(tmp_path), "--backend", "postgresql", env=env)
    assert result.returncode == 1 and "[postgres]" in result.stderr.splitlines()[-1]
