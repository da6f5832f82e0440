"""ZO-Muon: registers ``zo-muon`` (Lang et al., arXiv 2602.17155), subspace probes with an orthogonalised step."""

from zotune.methods.base import register_method
from zotune.methods.zo_muon.config import ZOMuonConfig
from zotune.methods.zo_muon.method import ZOMuon

__all__ = ["ZOMuon", "ZOMuonConfig"]

# lr: the public code's ZO-Muon command (1e-2); configs/bench/lr-sweep-zo-muon.yaml sweeps it on SST-2.
register_method("zo-muon", config_cls=ZOMuonConfig, method_cls=ZOMuon, lr=1e-2)
