"""GTE-multilingual-base (305M parameters, XLM-R vocabulary, RoPE), as transformers' native `gte`."""
from spaces.base import Space, regimes

SPACE = Space(
    name="gte",
    model="Alibaba-NLP/gte-multilingual-base",
    tiny_kind="gte",
    **regimes(adamw_lr=(5e-6, 5e-5), adamw_wd=(1e-3, 0.1),
              lion_lr=(5e-7, 1e-5), lion_wd=(1e-2, 1.0)),
    fixed=dict(max_length=256, batch_size=64, epochs=3, bf16=True),
)
