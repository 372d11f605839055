#!/usr/bin/env bash
# MLflow tracking server for rerank-search: SQLite (default) or PostgreSQL backend, artifacts
# served through the server, bound to 127.0.0.1 unless --host says otherwise.
# Only the search driver talks to MLflow (it logs for every trial), and `ray job submit` runs the
# driver on the head node, so a server on the head's 127.0.0.1 is all a search needs.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: cluster/mlflow_server.sh [--dir DIR] [--backend sqlite|postgresql|postgresql://USER@HOST/DB]
                                [--artifacts-destination DIR_OR_URI] [--host HOST] [--port PORT]
                                [--workers N] [-- MLFLOW_SERVER_ARGS...]

  --dir DIR            home of the SQLite file and of local artifacts (default: ~/mlflow)
  --backend B          sqlite (default): DIR/mlflow.db
                       postgresql: the URI comes from $MLFLOW_BACKEND_STORE_URI, so its password
                         never appears in ps output or shell history (needs psycopg2 installed)
                       postgresql://USER@HOST[:PORT]/DB: no password in it; libpq reads
                         PGPASSWORD or ~/.pgpass
  --artifacts-destination D
                       directory or s3://bucket/prefix the server stores artifacts in; clients
                       upload through the server (default: DIR/artifacts)
  --host HOST          interface to bind (default 127.0.0.1). MLflow has no authentication:
                       anything that can reach HOST:PORT can read and delete every run.
  --port PORT          default 5000
  --workers N          server processes (default 2)
  -- ARGS              passed to `mlflow server` as they are (e.g. --allowed-hosts)
EOF
}

die_usage() {
    echo "mlflow_server.sh: $*" >&2
    usage >&2
    exit 2
}

dir="${HOME}/mlflow"
backend=sqlite
artifacts=""
host=127.0.0.1
port=5000
workers=2
extra=()

while (($#)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --dir | --backend | --artifacts-destination | --host | --port | --workers)
            (($# >= 2)) || die_usage "$1 needs a value"
            case "$1" in
                --dir) dir="$2" ;;
                --backend) backend="$2" ;;
                --artifacts-destination) artifacts="$2" ;;
                --host) host="$2" ;;
                --port) port="$2" ;;
                --workers) workers="$2" ;;
            esac
            shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) die_usage "unknown argument: $1" ;;
    esac
done

[[ "$port" =~ ^[0-9]+$ ]] && ((port >= 1 && port <= 65535)) || die_usage "--port must be 1-65535, got $port"
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die_usage "--workers must be a positive integer, got $workers"

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

# The store URI goes to mlflow through its environment variable, never on its command line,
# where ps would show a password to every user of the node.
case "$backend" in
    sqlite)
        export MLFLOW_BACKEND_STORE_URI="sqlite:///${dir}/mlflow.db"
        shown="$MLFLOW_BACKEND_STORE_URI" ;;
    postgresql)
        [[ -n "${MLFLOW_BACKEND_STORE_URI:-}" ]] ||
            die_usage "--backend postgresql reads the URI from MLFLOW_BACKEND_STORE_URI, which is not set"
        [[ "$MLFLOW_BACKEND_STORE_URI" == postgres* ]] ||
            die_usage "MLFLOW_BACKEND_STORE_URI is not a postgresql:// URI"
        shown="postgresql (URI from MLFLOW_BACKEND_STORE_URI, not shown)" ;;
    postgresql://* | postgresql+*://*)
        # user:password@ in the authority, or password= in the query, puts a secret on the command line.
        if [[ "$backend" =~ ^[^/]*//[^/@]*:[^/@]*@ || "$backend" =~ [?\&]password= ]]; then
            die_usage "do not put the password in --backend; export MLFLOW_BACKEND_STORE_URI and pass --backend postgresql, or use PGPASSWORD / ~/.pgpass"
        fi
        export MLFLOW_BACKEND_STORE_URI="$backend"
        shown="$backend" ;;
    *) die_usage "--backend must be sqlite, postgresql or a postgresql:// URI without a password" ;;
esac

export MLFLOW_ARTIFACTS_DESTINATION="${artifacts:-${dir}/artifacts}"
[[ "$MLFLOW_ARTIFACTS_DESTINATION" == *://* ]] || mkdir -p "$MLFLOW_ARTIFACTS_DESTINATION"

case "$host" in
    127.* | localhost | ::1) ;;
    *) echo "WARNING: binding MLflow to $host: it has no authentication, so anyone who can reach" \
            "$host:$port can read, change and delete every run. Keep the port closed to the outside" \
            "(security group, NetworkPolicy) and reach it through an SSH tunnel or port-forward." >&2 ;;
esac

# MLflow's background job runner (a pool of worker processes) serves GenAI features this project
# does not use; without it the server starts faster and runs fewer processes.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

command -v mlflow >/dev/null || { echo "mlflow_server.sh: no mlflow on PATH (activate the project's venv)" >&2; exit 1; }
# mlflow would start and then fail on its first request without the PostgreSQL driver.
py="$(dirname "$(command -v mlflow)")/python"
if [[ "$MLFLOW_BACKEND_STORE_URI" == postgres* && -x "$py" ]] && ! "$py" -c "import psycopg2" 2>/dev/null; then
    echo "mlflow_server.sh: the PostgreSQL backend needs psycopg2: pip install -c constraints.txt -e '.[postgres]'" >&2
    exit 1
fi
echo "MLflow on http://${host}:${port}: backend ${shown}, artifacts ${MLFLOW_ARTIFACTS_DESTINATION}" >&2
# exec: the server takes this process's place, so signals to it (or its group) reach MLflow.
exec mlflow server --host "$host" --port "$port" --workers "$workers" --serve-artifacts ${extra[@]+"${extra[@]}"}
