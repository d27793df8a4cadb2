"""The LightningModule every run trains: any zoo model, cross-entropy, top-1 / top-5, multi-view test.

Test batches are ``(clips, labels, video)``, one item per view; the softmax scores of all views of a video
are averaged (docs/paper.md section 4: 10 clips x 3 crops) before top-k, gathered across processes under DDP.
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.utilities.distributed import gather_all_tensors

from nlbench.data.analysis import ensemble_views, view_scores
from nlbench.ops.layout import to_memory_format
from nlbench.ops.registry import placed_blocks
from nlbench.training.config import RecipeSection


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; ``step`` is the global step where it happened."""

    def __init__(self, step: int, value: float):
        super().__init__(f"loss is {value} at step {step}")
        self.step = step


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list[torch.Tensor]:
    """Per-sample 0/1 tensors: is the label among the top k scores.

    Hand-written, not torchmetrics' multiclass accuracy: that one returns the float32 ratio of the batch,
    whose last bits differ from the float64 mean the recorded runs logged; the test checks both agree."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top.eq(labels[:, None])
    return [hit[:, :k].any(dim=1).double() for k in ks]


class VideoClassifier(pl.LightningModule):
    def __init__(self, model: nn.Module, recipe: RecipeSection, total_steps: int, channels_last: bool = False,
                 ensemble: str = "mean_softmax", top5: bool = True):
        super().__init__()
        # Top-5 of 10 classes is 100 % for any model that has learnt anything: a column that cannot move.
        self.ks = (1, 5) if top5 else (1,)
        self.ensemble = ensemble  # how test views make one score per video (data.analysis.ENSEMBLE_RULES)
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.model = to_memory_format(model, self.memory_format)
        self.recipe = recipe
        for m in self._frozen_bn():
            m.requires_grad_(False)  # and configure_optimizers leaves them out
            m.eval()  # fit starts in the mode the module is in
        self.total_steps = total_steps
        self._test_scores: list[torch.Tensor] = []
        self.val_hits: list[torch.Tensor] = []  # top-1 right or not, per val clip in loader order (group score)
        self._test_labels: list[torch.Tensor] = []
        self._test_videos: list[torch.Tensor] = []
        self.test_predictions: tuple[torch.Tensor, ...] | None = None  # (per-video scores, labels, video ids)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model(clips.contiguous(memory_format=self.memory_format))

    # ------------------------------------------------------------------------------------- training

    def _frozen_bn(self) -> list[nn.Module]:
        # The paper's 128-frame runs (recipe.freeze_bn): the backbone's BN statistics and affine parameters
        # stay as initialised/loaded, as the released code's frozen BN (a fixed affine transform). Not the BN
        # after a non-local block's W_z: its gamma starts at 0, and frozen there the block would output 0
        # forever (the released frozen-BN models have no BN in the block and a zero W_z instead). The same for
        # any placed block: its norms are new layers, trained like the rest of it.
        if not self.recipe.freeze_bn:
            return []
        inside = {id(m) for block in placed_blocks(self.model).values() for m in block.modules()}
        return [m for m in self.model.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in inside]

    def train(self, mode: bool = True):
        # Lightning puts the module back in training mode at every epoch and after every validation (several
        # an epoch with val_points): frozen BN layers go back to eval mode each time, so they never update.
        super().train(mode)
        for m in self._frozen_bn():
            m.eval()
        return self

    def training_step(self, batch, batch_idx):
        if batch is None:  # every clip of the batch came from an unreadable video
            return None
        clips, labels = batch[0], batch[1]
        logits = self(clips)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.recipe.label_smoothing)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self.global_step, loss.item())
        # self.log costs ~1 ms a call on a CPU, as much as 5 % of a small model's step: log only the steps the
        # logger writes (every log_every_n_steps), which is all a W&B curve shows anyway.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0 or self.global_step == 0:
            top1, _ = topk_correct(logits.detach(), labels)
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/top1", top1.mean() * 100)
            self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def _eval_step(self, batch, prefix: str):
        if batch is None:
            return
        clips, labels = batch[0], batch[1]
        logits = self(clips)
        n = len(labels)
        self.log(f"{prefix}/loss", F.cross_entropy(logits, labels), batch_size=n, sync_dist=True)
        for k, hit in zip(self.ks, topk_correct(logits, labels, self.ks)):
            self.log(f"{prefix}/top{k}", hit.mean() * 100, batch_size=n, sync_dist=True, prog_bar=k == 1)
        return logits

    def validation_step(self, batch, batch_idx):
        logits = self._eval_step(batch, "val")
        if logits is not None:
            self.val_hits.append(logits.detach().argmax(1).eq(batch[1]).cpu())

    def on_validation_epoch_start(self) -> None:
        self.val_hits = []

    def test_step(self, batch, batch_idx):
        if batch is None:
            return
        clips, labels, videos = batch
        logits = self._eval_step(batch, "test_view")
        self._test_scores.append(view_scores(logits, self.ensemble).float())
        self._test_labels.append(labels)
        self._test_videos.append(videos)

    def on_test_epoch_start(self) -> None:
        self._test_scores, self._test_labels, self._test_videos = [], [], []

    def on_test_epoch_end(self) -> None:
        classes = self.model.fc.out_features if hasattr(self.model, "fc") else None
        scores = torch.cat(self._test_scores) if self._test_scores else torch.zeros(0, classes or 1)
        labels = torch.cat(self._test_labels) if self._test_labels else torch.zeros(0, dtype=torch.long)
        videos = torch.cat(self._test_videos) if self._test_videos else torch.zeros(0, dtype=torch.long)
        if self.trainer.world_size > 1:
            # Ranks see different views (DistributedSampler pads with repeats; a repeated view only
            # re-weights one video's average by one view).
            scores, labels, videos = (self._gather(t) for t in (scores, labels, videos))
        video_ids, video_scores = ensemble_views(scores, videos, self.ensemble)
        video_labels = _labels_per_video(labels, videos)
        self.test_predictions = (video_scores.cpu(), video_labels.cpu(), video_ids.cpu())
        for k, hit in zip(self.ks, topk_correct(video_scores, video_labels, self.ks)):
            self.log(f"test/top{k}", hit.mean() * 100, rank_zero_only=True)

    @staticmethod
    def _gather(t: torch.Tensor) -> torch.Tensor:
        # Ranks may hold different counts (batches of unreadable videos dropped): torchmetrics pads, gathers
        # and trims them, in rank order.
        return torch.cat(gather_all_tensors(t))

    # ------------------------------------------------------------------------------------ optimiser

    def configure_optimizers(self):
        r = self.recipe
        decay, no_decay = [], []
        for module in self.model.modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad:
                    continue
                is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
                (no_decay if is_bn else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": r.weight_decay},
            {"params": no_decay, "weight_decay": r.bn_weight_decay},
        ]
        # The fused kernels update every tensor in one pass; the per-tensor loop is ~10 small ops per tensor,
        # which on a CPU costs the small models 5 ms of a 70 ms step. Same update, same result.
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + no_decay)
        if r.optimizer == "sgd":
            opt = torch.optim.SGD(
                groups, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov and r.momentum > 0, fused=fused
            )
        else:
            opt = torch.optim.AdamW(groups, lr=r.lr, fused=fused)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self._scheduler(opt), "interval": "step"}}

    def _scheduler(self, opt):
        # Every schedule as one closed form in a LambdaLR, not torch's classes: CosineAnnealingLR and
        # MultiStepLR update the lr recursively and drift from the closed form in the last bits (1e-17 after
        # a few hundred steps), and OneCycleLR warms up along a cosine and cycles momentum; the recorded runs
        # used this form, so it stays to reproduce them bit for bit (tests compare it with torch's to 1e-12).
        r, total = self.recipe, max(1, self.total_steps)
        warm = min(r.warmup_steps, total - 1)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            if r.schedule == "constant":
                return 1.0
            if r.schedule == "step":
                return r.gamma ** sum(step >= m * total for m in r.milestones)
            progress = (step - warm) / max(1, total - warm)
            if r.schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
            # onecycle: linear warm-up over the first 15 %, then cosine down to 1 % (no separate warm-up)
            peak = 0.15
            if progress < peak:
                return 0.04 + 0.96 * progress / peak
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (progress - peak) / (1 - peak)))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _labels_per_video(labels: torch.Tensor, videos: torch.Tensor) -> torch.Tensor:
    """The label of each video, in the order ``average_views`` returns its videos."""
    order = torch.unique(videos)  # sorted, as in average_views
    out = torch.empty(len(order), dtype=labels.dtype)
    position = {int(v): i for i, v in enumerate(order)}
    for label, video in zip(labels.tolist(), videos.tolist()):
        out[position[video]] = label
    return out
