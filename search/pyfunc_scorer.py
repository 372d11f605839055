"""The best model as an MLflow pyfunc (logged as "models from code": MLflow stores this file itself,
so loading needs neither this repository nor pickles). Input: a DataFrame with columns query and
passage; output: one raw logit per row, exactly as trainables.evaluate.rerank_scores scores.

Self-contained on purpose: only torch, transformers and mlflow are imported where it is loaded.
"""
from __future__ import annotations

import mlflow.pyfunc
from mlflow.models import set_model

MODEL_ARTIFACT = "model_dir"  # the key of the transformers folder in the pyfunc's artifacts
BATCH = 32


class PairScorer(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import torch
        import transformers
        path = context.artifacts[MODEL_ARTIFACT]
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, dtype=torch.float32).eval()

    def predict(self, context, model_input, params=None):
        import torch
        queries, passages = list(model_input["query"]), list(model_input["passage"])
        scores = []
        with torch.no_grad():
            for start in range(0, len(queries), BATCH):
                # only_second and the saved model_max_length: the truncation the model was trained with
                batch = self.tokenizer(queries[start:start + BATCH], passages[start:start + BATCH], padding=True,
                                       truncation="only_second", max_length=self.tokenizer.model_max_length,
                                       return_tensors="pt")
                scores += self.model(**batch).logits.view(-1).float().tolist()
        return scores


set_model(PairScorer())
