"""The training loop of one worker, without Ray: MLM epochs, then contrastive epochs.

Ray Train workers (workers/encoder/train.py) run `EncoderTraining` under DDP with `rank`/`world`, an
epoch at a time, in the shared epoch loop (workers/raytrain/epochs.py: progress, fault hook, a
checkpoint per epoch); the benchmark runs `fit` in one process on one device.

Data split: each epoch draws one permutation of all rows from (seed, epoch); rank r takes every
world-th row of it and cuts `steps = rows // (world * batch_size)` batches (the same count on every
rank, as DDP needs). In-batch negatives are those of the rank's own batch (no all-gather).
Learning rate: linear warm-up over the first `warmup_fraction` of a phase's steps, then linear
decay to zero, computed from the step number alone, so a resumed run continues on the same curve.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from firth.workers.encoder.inference import autocast
from firth.workers.encoder.model import Encoder
from firth.workers.encoder.objectives import contrastive_loss, mask_tokens
from firth.workers.encoder.pairs import Pair

LOSS_POINTS = 200  # at most this many points of an epoch's loss curve (means over consecutive steps)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 1  # contrastive epochs
    mlm_epochs: int = 0  # masked-language-model epochs, before the contrastive ones
    batch_size: int = 32  # per worker
    learning_rate: float = 3e-5
    warmup_fraction: float = 0.1
    temperature: float = 0.05
    mlm_probability: float = 0.15
    seed: int = 0

    @property
    def total_epochs(self) -> int:
        return self.mlm_epochs + self.epochs


@dataclass
class EpochResult:
    epoch: int  # 1-based, counting MLM epochs first
    phase: str  # "mlm" or "contrastive"
    loss: float  # mean over this rank's steps
    samples: int  # examples this rank trained on
    seconds: float
    step_losses: list[float] = field(default_factory=list)  # mean loss of each run of `loss_every` steps
    loss_every: int = 1  # steps per point of step_losses (the last point may cover fewer)


def save_optimizer_state(optimizer_state: dict, path) -> None:
    """{"phase": str, "state": AdamW.state_dict()} as a checkpoint file: tensors, numbers, strings,
    tuples and dicts only, which `load_optimizer_state` reads with torch.load(weights_only=True)."""
    torch.save({"phase": str(optimizer_state["phase"]), "state": optimizer_state["state"]}, path)


def load_optimizer_state(path) -> dict:
    """What save_optimizer_state wrote. weights_only: a checkpoint folder in the store runs no pickled
    code when a worker resumes from it (anything but tensors and plain containers is refused)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def steps_per_epoch(rows: int, batch_size: int, world: int) -> int:
    return rows // (batch_size * world)


def loss_curve(losses: list[float], points: int = LOSS_POINTS) -> tuple[list[float], int]:
    """Per-step losses -> (means of consecutive runs of `every` steps, every): at most `points` values,
    one per step when the epoch has no more steps than that. The same step count on every rank gives
    the same shape, so the curves of DDP ranks can be summed element by element."""
    every = max(1, -(-len(losses) // points))  # ceil
    steps = np.asarray(losses, dtype=np.float64)
    starts = np.arange(0, len(steps), every)
    return (np.add.reduceat(steps, starts) / np.diff(np.append(starts, len(steps)))).tolist() if len(steps) else [], every


def epoch_rows(rows: int, batch_size: int, rank: int, world: int, seed: int, epoch: int) -> list[np.ndarray]:
    """This rank's batches of row indices for `epoch`: steps_per_epoch(...) arrays of batch_size."""
    order = np.random.default_rng((seed, epoch)).permutation(rows)[rank::world]
    steps = steps_per_epoch(rows, batch_size, world)
    return [order[s * batch_size:(s + 1) * batch_size] for s in range(steps)]


def learning_rate(step: int, total_steps: int, settings: TrainSettings) -> float:
    warmup = max(1, int(total_steps * settings.warmup_fraction))
    if step < warmup:
        return settings.learning_rate * (step + 1) / warmup
    return settings.learning_rate * max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def contrastive_step(model: nn.Module, encoder: Encoder, batch: list[Pair], temperature: float,
                     device: torch.device) -> torch.Tensor:
    """Loss of one batch; `model` is the encoder or its DDP wrapper (three forwards, one backward)."""
    with autocast(device):
        anchor = model(**encoder.tokenize([p.anchor for p in batch], device))  # (batch, dim)
        positive = model(**encoder.tokenize([p.positive for p in batch], device))  # (batch, dim)
        negative = None
        if all(p.negative is not None for p in batch):  # hard negatives only when the whole batch has them
            negative = model(**encoder.tokenize([p.negative for p in batch], device))
    return contrastive_loss(anchor, positive, negative, temperature)


def mlm_step(model: nn.Module, encoder: Encoder, texts: list[str], probability: float, device: torch.device,
             generator: torch.Generator) -> torch.Tensor:
    """Masked-LM loss of one batch; `model` is a BertForMaskedLM (or its DDP wrapper) sharing encoder's weights."""
    tokenizer = encoder.tokenizer
    batch = tokenizer(texts, padding=True, truncation=True, max_length=encoder.spec.max_length, return_tensors="pt",
                      return_special_tokens_mask=True, return_token_type_ids=False)
    inputs, labels = mask_tokens(batch["input_ids"], batch["special_tokens_mask"], mask_token_id=tokenizer.mask_token_id,
                                 vocab_size=len(tokenizer), probability=probability, generator=generator)
    with autocast(device):
        out = model(input_ids=inputs.to(device), attention_mask=batch["attention_mask"].to(device),
                    labels=labels.to(device))
    return out.loss


class EncoderTraining:
    """One worker's training across epochs: MLM epochs first, then contrastive ones, a fresh AdamW
    per phase (resumed from `optimizer_state` in the phase it was saved in), and the generator of
    the MLM masks. `wrap` turns a module into what is called (DDP under Ray Train)."""

    def __init__(self, encoder: Encoder, masked_lm: nn.Module | None, pairs: list[Pair], texts: list[str],
                 settings: TrainSettings, *, device: torch.device, rank: int = 0, world: int = 1, start_epoch: int = 0,
                 optimizer_state: dict | None = None, wrap: Callable[[nn.Module], nn.Module] = lambda m: m):
        if start_epoch < settings.mlm_epochs and masked_lm is None:
            raise ValueError("mlm_epochs > 0 needs the encoder's masked-LM form (model.mlm_epochs)")
        self.encoder, self.masked_lm, self.pairs, self.texts, self.settings = encoder, masked_lm, pairs, texts, settings
        self.device, self.rank, self.world, self.wrap = device, rank, world, wrap
        self.saved_optimizer = optimizer_state
        self.phase: str | None = None  # of the current optimizer
        self.optimizer: torch.optim.Optimizer | None = None
        self.model: nn.Module | None = None  # what is trained this phase, wrapped
        self.generator = torch.Generator().manual_seed(settings.seed * 1000 + rank)

    def phase_of(self, epoch: int) -> str:
        return "mlm" if epoch < self.settings.mlm_epochs else "contrastive"

    def epoch(self, epoch: int, on_step: Callable[[int], None] | None = None) -> EpochResult:
        """Train `epoch` (0-based); `on_step(steps_done)` after each step."""
        settings, phase = self.settings, self.phase_of(epoch)
        trained = self.masked_lm if phase == "mlm" else self.encoder
        if self.phase != phase:
            self.optimizer = torch.optim.AdamW(trained.parameters(), lr=settings.learning_rate)
            if self.saved_optimizer is not None and self.saved_optimizer.get("phase") == phase:
                self.optimizer.load_state_dict(self.saved_optimizer["state"])
            self.phase, self.model = phase, self.wrap(trained)
        rows = len(self.texts) if phase == "mlm" else len(self.pairs)
        batches = epoch_rows(rows, settings.batch_size, self.rank, self.world, settings.seed, epoch)
        if not batches:
            raise ValueError(f"{rows} training {'texts' if phase == 'mlm' else 'pairs'} for {self.world} worker(s) of "
                             f"batch_size {settings.batch_size}: not one full batch; lower model.batch_size or give "
                             "more documents")
        phase_epoch = epoch - (0 if phase == "mlm" else settings.mlm_epochs)
        total_steps = len(batches) * (settings.mlm_epochs if phase == "mlm" else settings.epochs)
        trained.train()
        start, losses = time.perf_counter(), []
        for step, rows_of_batch in enumerate(batches):
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(phase_epoch * len(batches) + step, total_steps, settings)
            if phase == "mlm":
                loss = mlm_step(self.model, self.encoder, [self.texts[i] for i in rows_of_batch],
                                settings.mlm_probability, self.device, self.generator)
            else:
                loss = contrastive_step(self.model, self.encoder, [self.pairs[i] for i in rows_of_batch],
                                        settings.temperature, self.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(step + 1)
        curve, every = loss_curve(losses)
        return EpochResult(epoch + 1, phase, sum(losses) / len(batches), len(batches) * settings.batch_size,
                           time.perf_counter() - start, curve, every)

    def optimizer_state(self) -> dict:
        """What a checkpoint keeps of the optimizer: its phase and state."""
        return {"phase": self.phase, "state": self.optimizer.state_dict()}


def fit(encoder: Encoder, masked_lm: nn.Module | None, pairs: list[Pair], texts: list[str], settings: TrainSettings, *,
        device: torch.device, start_epoch: int = 0, optimizer_state: dict | None = None) -> list[EpochResult]:
    """Train in this process from `start_epoch` to settings.total_epochs (the benchmark's local
    trainer; Ray Train workers run EncoderTraining through workers/raytrain/epochs.py)."""
    training = EncoderTraining(encoder, masked_lm, pairs, texts, settings, device=device, start_epoch=start_epoch,
                               optimizer_state=optimizer_state)
    results = [training.epoch(epoch) for epoch in range(start_epoch, settings.total_epochs)]
    encoder.eval()
    return results
