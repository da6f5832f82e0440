"""ZO-Muon: registers ``zo-muon`` (Lang et al., arXiv 2602.17155), subspace probes with an orthogonalised step."""

from zotune.methods.base import register_method
from zotune.methods.zo_muon.config import ZOMuonConfig
from zotune.methods.zo_muon.method import ZOMuon

__all__ = ["ZOMuon", "ZOMuonConfig"]

# lr: the sweep's choice (configs/bench/lr-sweep-zo-muon.yaml, SST-2): 1e-1 beat 1e-2 (the public code's, which
# barely moves this model) and 3e-2 in late dev accuracy; 3e-1 diverged.
register_method("zo-muon", config_cls=ZOMuonConfig, method_cls=ZOMuon, lr=1e-1)
