"""LOZO: registers ``lozo`` (Chen et al., arXiv 2410.07698), low-rank perturbations U Vᵀ with a lazy V."""

from zotune.methods.base import register_method
from zotune.methods.lozo.config import LOZOConfig
from zotune.methods.lozo.method import LOZO

__all__ = ["LOZO", "LOZOConfig"]

# lr: provisional until LOZO's own sweep sets it: MeZO's swept 3e-5 over the rank 2, since E[z zᵀ] = r I for
# z = U Vᵀ (docs/methods/lozo.md).
register_method("lozo", config_cls=LOZOConfig, method_cls=LOZO, lr=1e-5)
