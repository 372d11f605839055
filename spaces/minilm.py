"""MiniLM-L12-H384 (33M parameters, BERT WordPiece): a small, fast cross-encoder backbone."""
from spaces.base import Space, regimes
from trainables.models import PACKAGED_MINILM

SPACE = Space(
    name="minilm",
    model="microsoft/MiniLM-L12-H384-uncased",
    fallback_model=PACKAGED_MINILM,  # all-MiniLM-L6-v2, shipped on PyPI, so the default runs offline
    tiny_kind="bert",
    **regimes(adamw_lr=(1e-5, 1e-4), adamw_wd=(1e-3, 0.1),
              lion_lr=(1e-6, 2e-5), lion_wd=(1e-2, 1.0)),
    fixed=dict(max_length=256, batch_size=64, epochs=3, bf16=True),
)
