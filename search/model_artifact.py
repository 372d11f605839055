"""The search's best model as an artifact, at the end of a finished search: a model card in the best
checkpoint's model/ (trainables/model_card.py), and an MLflow pyfunc (search/pyfunc_scorer.py) with
that folder inside, logged on the best trial's study parent run as `best_model` and optionally
registered in the model registry.

    mlflow.pyfunc.load_model("runs:/<parent run>/best_model").predict(df)  # df: query, passage
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from trainables.errors import UsageError

ARTIFACT_PATH = "best_model"
SCORER = Path(__file__).with_name("pyfunc_scorer.py")


def check_name(name: str) -> str:
    """A registered model name MLflow accepts (no '/' or ':'), and no quote to break our registry search."""
    if not name.strip() or any(c in name for c in "/:'\""):
        raise UsageError(f"--register-model {name!r}: a model name must be non-empty, without / : or quotes")
    return name


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    return ModelSignature(inputs=Schema([ColSpec("string", "query"), ColSpec("string", "passage")]),
                          outputs=Schema([ColSpec("double")]))


def requirements() -> list[str]:
    # Pinned to what trained it; listed, not inferred: inference loads the model in a subprocess.
    import mlflow
    import torch
    import transformers
    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"transformers=={transformers.__version__}", "pandas"]


def save_pyfunc(model_dir, out_dir) -> Path:
    """An MLflow pyfunc model folder at out_dir (replaced if present) holding a copy of model_dir."""
    import mlflow.pyfunc

    from search.pyfunc_scorer import MODEL_ARTIFACT
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    mlflow.pyfunc.save_model(path=str(out_dir), python_model=str(SCORER), artifacts={MODEL_ARTIFACT: str(model_dir)},
                             signature=signature(), pip_requirements=requirements())
    return out_dir


def log_model(client, run_id: str, pyfunc_dir, register: str | None = None) -> str:
    """Upload the pyfunc folder to the run; register it under `register` when given. Its URI."""
    uri = f"runs:/{run_id}/{ARTIFACT_PATH}"
    client.log_artifacts(run_id, str(pyfunc_dir), ARTIFACT_PATH)
    if register:
        if not client.search_registered_models(f"name = '{register}'"):
            client.create_registered_model(register)
        client.create_model_version(register, uri, run_id=run_id)
    return uri


def publish(summaries: list[dict], base: dict, test: dict, out_dir: Path, client, register: str | None = None) -> str | None:
    """Card, pyfunc and MLflow model for the overall best trial's final checkpoint; its model URI.
    A tracking store that refuses it costs a warning: the card and the pyfunc folder stay on disk."""
    from trainables.checkpoint import MODEL_DIR
    from trainables.config import TrainConfig
    from trainables.model_card import write_card
    found = [s for s in summaries if s["best"] and s["best"]["checkpoint"]]
    if not found:
        return None
    summary = max(found, key=lambda s: s["best"]["metrics"]["ndcg_at_10"])
    best = summary["best"]
    model_dir = Path(best["checkpoint"]) / MODEL_DIR
    if not model_dir.is_dir():  # a checkpoint on storage this driver does not see
        print(f"warning: best model not published: {model_dir} is not on this machine", file=sys.stderr)
        return None
    config = TrainConfig.from_dict({**base, **best["config"]}).to_dict()
    write_card(model_dir, config, best["metrics"], test, best["trial_id"])
    pyfunc_dir = save_pyfunc(model_dir, out_dir)
    try:
        uri = log_model(client, summary["parent_run_id"], pyfunc_dir, register)
    except Exception as err:  # tracking down: the model is still usable from disk
        print(f"warning: best model not logged to MLflow ({type(err).__name__}: {str(err)[:120]}); "
              f"it is at {pyfunc_dir}", file=sys.stderr)
        return None
    print(f"best model: {model_dir} (sentence-transformers CrossEncoder), MLflow pyfunc {uri}"
          + (f", registered as {register!r}" if register else ""), file=sys.stderr)
    return uri
