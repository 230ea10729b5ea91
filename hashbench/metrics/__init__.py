# PROVISIONAL minimal metric until the exact evaluator (metrics branch) lands; replaced at merge.
import torch
from torchmetrics import Metric


class HashingRetrieval(Metric):
    def __init__(self, ks=(None,), radius=2, pr_curve=False, **kw):
        super().__init__()
        self.ks, self.radius = ks, radius
        for r in ("q", "d"):
            self.add_state(f"{r}c", default=[], dist_reduce_fx="cat")
            self.add_state(f"{r}l", default=[], dist_reduce_fx="cat")

    def update(self, codes, labels, role="query"):
        r = "q" if role == "query" else "d"
        getattr(self, f"{r}c").append(codes.float())
        getattr(self, f"{r}l").append(labels.float())

    def compute(self):
        qc, dc = torch.cat(self.qc), torch.cat(self.dc)
        ql, dl = torch.cat(self.ql), torch.cat(self.dl)
        h = (qc.shape[1] - qc @ dc.T) / 2
        rel = (ql @ dl.T > 0).float()
        out = {}
        for k in self.ks:
            kk = dc.shape[0] if k is None else min(k, dc.shape[0])
            order = torch.argsort(h, dim=1, stable=True)[:, :kk]
            r = torch.gather(rel, 1, order)
            c = r.cumsum(1)
            pos = torch.arange(1, kk + 1).float()
            ap = (r * c / pos).sum(1) / c[:, -1].clamp(min=1)
            out["mAP@all" if k is None else f"mAP@{k}"] = ap.mean()
        ball = h <= self.radius
        out[f"P@H<={self.radius}"] = ((rel * ball).sum(1) / ball.sum(1).clamp(min=1)).mean()
        return out
