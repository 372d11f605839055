"""ModernBERT-base (149M parameters, alternating local/global attention, unpadded when possible)."""
from spaces.base import Space, regimes

SPACE = Space(
    name="modernbert",
    model="answerdotai/ModernBERT-base",
    tiny_kind="modernbert",
    # The paper's ModernBERT run used 2e-6 with cosine; both ranges contain their regime's scale.
    **regimes(adamw_lr=(5e-6, 1e-4), adamw_wd=(1e-3, 0.1),
              lion_lr=(5e-7, 2e-5), lion_wd=(1e-2, 1.0)),
    fixed=dict(max_length=256, batch_size=64, epochs=3, bf16=True),
)
