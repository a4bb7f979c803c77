"""The one on-policy loop for every method: rollout, score, target, loss, step, log.

What this loop keeps and drops (say it up front, nanochat style):
- A step is one batch of rollouts. By default it takes one optimizer update (fully on-policy):
  importance ratios are 1 and are not computed. ``schedule.ppo_epochs`` passes over the batch,
  each split into ``schedule.mini_batches`` mini-batches of whole groups, give
  ``ppo_epochs x mini_batches`` optimizer updates per step (verl's PPO epochs and
  ``ppo_mini_batch_size``): the sampling policy's log-probs are computed once, without grad,
  before the first update, so the PPO ratio leaves 1 after it (the clip binds, ``clip_frac``
  counts it) and the distillation loss takes SDPO's clipped importance weight. Teacher targets
  are scored once per step, by the teacher as it was when the rollouts were sampled.
- The lr schedule advances once per step (per rollout batch, as verl), not per update, so
  ``warmup_steps`` counts batches; an EMA teacher moves after every update.
- Loss normalisation: every micro-batch loss is divided by the GLOBAL number of loss units
  (tokens by default) of its optimizer update, counted over that update's micro-batches and
  processes BEFORE its first backward, so gradient accumulation and data parallelism never
  change the loss.
- DAPO dynamic sampling (``sampling.dynamic_sampling``, one process): groups whose rewards are
  all equal are dropped and more prompts are sampled until ``prompts_per_step`` groups remain or
  ``sampling.max_sampling_batches`` batches were drawn.
- Data parallel through ``accelerate`` (DDP, or FSDP2: ``train/fsdp.py``; DeepSpeed configs are
  documented in docs/training.md). Teacher passes run on the unwrapped model under ``no_grad``;
  under FSDP inside one phase with every shard all-gathered (``_full_weights``).
- Non-finite guard: a step whose loss or gradient norm is not finite is skipped (no optimizer
  step, no teacher update) and logged; ``max_nonfinite_steps`` in a row stop the run. With
  float16 weights the loss is scaled (``loss_scale.LossScaler``): an overflow of the scaled
  gradients halves the scale and skips the step without counting toward that limit.
- Device and dtype: decided once (``selfdistill.hardware.resolve``) from the accelerator's device;
  the policy loads there, and the teachers are built from it after ``accelerate.prepare``, so
  every tensor a teacher keeps (EMA averages, a frozen copy) lives where the student does.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import json

import numpy as np
import torch
from accelerate.utils import DistributedType

from selfdistill import methods

from . import checkpoint, fsdp, microbatch, resume_guard, rollouts, size_estimate
from .batches import DataPosition, PromptStream, shard
from .config import ConfigError, TrainConfig, to_yaml
from .loss_scale import LossScaler
from .metrics import MetricsLogger
from .optim import build_optimizer
from .resume_guard import OutputDirError  # noqa: F401  (raised by resume_guard.inspect; re-exported)
from .setup import context_config, load_data, load_policy, preflight, teachers
from .step_metrics import StepOutcome, StepTimer, step_row

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient norm."""


class Trainer:
    """Wires the parts of a run together; :meth:`fit` runs the loop.

    ``rollout_backend``: a RolloutBackend, or a factory ``(model, tokenizer) -> RolloutBackend``
    (default: HF generate on the student).
    """

    def __init__(self, cfg: TrainConfig, *, rollout_backend=None, accelerator=None) -> None:
        from accelerate import Accelerator

        from selfdistill.hardware import resolve

        self.cfg = cfg
        self.acc = accelerator or Accelerator(cpu=cfg.runtime.device == "cpu" or not torch.cuda.is_available())
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        preflight(cfg, self.world)
        self.method = methods.of(cfg.method)  # the method's record: what every part below reads
        _check_updates(cfg, self.world)
        self.out = Path(cfg.output_dir)
        self.ckpt_root = self.out / "checkpoints"
        if cfg.runtime.cpu_allocator == "keep" and self.acc.device.type == "cpu":
            from .allocator import keep_freed_memory

            keep_freed_memory()
        _seed_everything(cfg.seed)
        self.data = load_data(cfg)  # before the model: bad data fails in seconds
        self.run_definition = resume_guard.run_definition(cfg, self.data.examples)
        resume_plan = resume_guard.inspect(cfg, self.ckpt_root, self.run_definition)  # before the model
        from selfdistill.contexts import Renderer

        context_config(cfg.contexts)  # option errors before the model loads
        self.hardware = resolve(cfg.model.dtype, self.acc.device)
        if self.acc.is_main_process:
            print(f"selfdistill: {self.hardware.line()}", file=sys.stderr)
            if self.hardware.warning:
                log.warning("%s", self.hardware.warning)
            if getattr(self.acc, "mixed_precision", "no") != "no":
                log.warning("accelerate mixed_precision=%s autocasts the student pass only; selfdistill "
                            "sets precision with model.dtype (set accelerate's mixed_precision to 'no')",
                            self.acc.mixed_precision)
        self.model, self.tokenizer = load_policy(cfg, self.hardware)
        self.renderer = Renderer(self.tokenizer, context_config(cfg.contexts, model=self.model))
        scorer = microbatch.ResponseScorer(self.model)
        cpu_fsdp = fsdp.requested() and self.acc.distributed_type == DistributedType.MULTI_CPU
        if cpu_fsdp:  # accelerate shards only on accelerators; the optimizer then takes the shards
            scorer = fsdp.shard_on_cpu(self.acc, scorer)
        optimizer, self.scheduler = build_optimizer(self.model.parameters(), cfg.optimizer, cfg.schedule)
        if cpu_fsdp:
            self.scorer, self.optimizer = scorer, self.acc.prepare(optimizer)
        else:
            self.scorer, self.optimizer = self.acc.prepare(scorer, optimizer)
            fsdp.check_version(self.acc)
        self.fsdp = fsdp.is_sharded(self.scorer)
        if self.fsdp:
            fsdp.quiet_view_warning()
        teacher, base, live = teachers(cfg, self.model, self.method)  # after prepare: on the student's device
        self.scaler = LossScaler() if self.hardware.dtype == "float16" else None
        self.passes = microbatch.Passes(self.scorer, self.model, teacher, base, live,
                                      chunk_size=cfg.objective.loss_chunk_size,
                                      share_prefixes=cfg.runtime.share_prefixes)
        from selfdistill.models import make_teacher

        sch = cfg.schedule
        # the sampling policy's log-probs (no grad) when a step takes several updates
        self.sampling_policy = make_teacher(self.model, "live") if sch.ppo_epochs * sch.mini_batches > 1 else None
        # the frozen initial policy of the k3 KL term
        self.reference = None
        if cfg.objective.kl_coef > 0 and methods.takes_pg(self.method, cfg.objective.hybrid_lambda):
            self.reference = base if base is not None and base.mode == "fixed" else make_teacher(self.model, "fixed")
        if rollout_backend is None:
            from selfdistill.rollout import make_backend

            ro_cfg = cfg.rollout
            opts = {} if ro_cfg.backend == "hf" else dict(
                gpu_memory_utilization=ro_cfg.gpu_memory_utilization, sleep=ro_cfg.sleep,
                dtype=self.hardware.dtype, device=self.hardware.device, seed=cfg.seed)
            rollout_backend = lambda model, tok: make_backend(ro_cfg.backend, model, tok, **opts)  # noqa: E731
        if isinstance(rollout_backend, type) or not hasattr(rollout_backend, "generate"):
            # a factory (model, tokenizer) -> backend
            rollout_backend = rollout_backend(self.model, self.tokenizer)
        self.backend = rollout_backend
        self.rewarder = None
        if rollouts.needs_rewards(cfg, self.data.examples):
            from selfdistill.rewards import RewardScorer

            self.rewarder = RewardScorer(timeout_s=cfg.rewards.timeout_s, workers=1,
                                         answer_format=cfg.rewards.answer_format)
        self.stream = PromptStream(len(self.data.examples), data_seed=cfg.data.data_seed,
                                   shuffle=cfg.data.shuffle)
        self.step = 0
        self.nonfinite_streak = 0
        self.antisd_warmup_entropy: float | None = None
        keep_lines = self._resume(resume_plan) if resume_plan is not None else None
        self.logger = None
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(f"# {self.hardware.line()}\n"
                                                  + resume_guard.config_header(self.out) + to_yaml(cfg))
            (self.out / "hardware.json").write_text(json.dumps(self.hardware.describe(), indent=2) + "\n")
            lg = cfg.logging
            self.logger = MetricsLogger(self.out, keep_lines=keep_lines, tensorboard=lg.tensorboard,
                                        wandb=lg.wandb, trackio=lg.trackio, project=lg.project,
                                        run_config={**cfg.to_dict(), "hardware": self.hardware.describe()})
        if self.acc.is_main_process:  # the size of what is about to run, before the first step
            size_estimate.announce(size_estimate.estimate(
                cfg, num_params=sum(p.numel() for p in self.model.parameters()), device_type=self.acc.device.type,
                threads=torch.get_num_threads(), start_step=self.step, dtype=self.hardware.dtype), cfg)
        from .periodic_eval import PeriodicEval

        self.periodic_eval = PeriodicEval(cfg, is_main=self.acc.is_main_process) if cfg.eval.every else None

    # ------------------------------------------------------------------ the loop

    def fit(self) -> Path:
        """Run from the current step to ``schedule.max_steps``; returns output_dir."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        bar = tqdm(total=cfg.schedule.max_steps, initial=self.step, desc=cfg.method.name,
                   disable=not (self.acc.is_main_process and cfg.logging.progress))
        first = self.step  # the measured pace is reported after this session's first step
        try:
            while self.step < cfg.schedule.max_steps:
                self.step += 1
                row = self.train_step(self.step)
                if self.acc.is_main_process and self.step == first + 1 and self.step < cfg.schedule.max_steps:
                    size_estimate.after_first_step(row["time/step_s"], cfg.schedule.max_steps - self.step)
                if self.periodic_eval is not None:
                    with self._full_weights(self.periodic_eval.due(self.step)):  # main evaluates
                        row.update(self.periodic_eval.maybe(self.step, self.model, self.tokenizer, self.renderer))
                if self.logger is not None:
                    self.logger.log(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{row['lr']:.2g}")
                if self.nonfinite_streak >= cfg.schedule.max_nonfinite_steps:
                    self.save()
                    raise NonFiniteError(self._nonfinite_message())
                if self.step % cfg.checkpoint.every == 0 or self.step == cfg.schedule.max_steps:
                    self.save()
            self.save_final()
        finally:
            bar.close()
            self.close()
        return self.out

    def train_step(self, step: int) -> dict:
        """One step: rollout -> reward -> plan -> score -> (loss -> update) per mini-batch and
        epoch -> lr schedule; the metrics row."""
        cfg, timer = self.cfg, StepTimer()
        extra: dict = {}
        with timer("step"):
            local = shard(self.stream.next_global(cfg.schedule.prompts_per_step), self.rank, self.world)
            prompts = [self.data.examples[i] for i in local]
            # no-grad phase: under FSDP the student (and teachers' own weights) all-gathered once
            with self._full_weights():
                with timer("rollout"):  # sample from the student context
                    ro = rollouts.sample(cfg, self.backend, self.renderer, prompts, self.rank * len(local),
                                         step=step, rank=self.rank)
                with timer("score"):
                    rollouts.reward(cfg, self.rewarder, ro)
                if cfg.sampling.dynamic_sampling:
                    with timer("rollout"):
                        ro, extra = self._refill(step, ro)
                with timer("score"):  # every role rendered, loss units counted, no-grad passes
                    rendered, minis = self._plan(step, ro)
                    plans = [p for mini in minis for p in mini]
                    targets = [microbatch.score(cfg, self.passes, p) for p in plans]
                    self._antisd_lambda = self._antisd_gate(targets) if self.method.context_scores else 0.0
                    chunk = self.passes.chunk_size
                    old = [microbatch.policy_logprobs(self.sampling_policy, p, chunk) if self.sampling_policy is not None
                           else None for p in plans]
                    ref = [microbatch.policy_logprobs(self.reference, p, chunk) if self.reference is not None and p.pg_mask_B_T
                           is not None else None for p in plans]
                controls = self._controls(step, ro)  # before the update: the policy that sampled
            results, outcomes = [], []
            for _ in range(cfg.schedule.ppo_epochs):
                start = 0
                for mini in minis:
                    part = slice(start, start + len(mini))
                    start += len(mini)
                    units = self._sum(sum(p.loss_units for p in mini))
                    with timer("loss"):  # student passes with gradients, accumulated
                        res = self._backward(mini, targets[part], units, old[part], ref[part])
                    outcomes.append(self._update(step, res))
                    results += res
            outcome = self._end_step(outcomes)
        row = step_row(self.method, step, ro, rendered, results, outcome, timer, reduce_sum=self._reduce,
                       gather=self._gather_values, world=self.world, antisd_lambda=self._antisd_lambda)
        if len(outcomes) > 1:
            row["ppo/updates"] = len(outcomes)
        row.update(extra)
        row.update(controls)
        if self.scaler is not None:
            row["loss_scale"] = self.scaler.scale
        return row

    def _refill(self, step: int, ro) -> tuple:
        """DAPO dynamic sampling (one process): keep the groups whose rewards differ, sample
        further batches of ``prompts_per_step`` prompts until that many groups are kept or
        ``max_sampling_batches`` batches were drawn, then keep the first ``prompts_per_step``
        groups. When no group was kept the first batch trains as it is (no policy-gradient
        signal, as without dynamic sampling). Returns (rollouts, metrics)."""
        cfg = self.cfg
        target, n = cfg.schedule.prompts_per_step, cfg.sampling.rollouts_per_prompt

        def informative(r):
            flat = set(rollouts.flat_groups(r))
            return r.select([i for i, g in enumerate(r.group_ids) if g not in flat])

        kept = [informative(ro)]
        count, batches, drawn = len(kept[0]) // n, 1, len(ro) // n
        while count < target and batches < cfg.sampling.max_sampling_batches:
            prompts = [self.data.examples[i] for i in self.stream.next_global(target)]
            more = rollouts.sample(cfg, self.backend, self.renderer, prompts, batches * target,
                                   step=step, rank=self.rank, batch=batches)
            rollouts.reward(cfg, self.rewarder, more)
            kept.append(informative(more))
            count += len(kept[-1]) // n
            batches += 1
            drawn += len(prompts)
        out = rollouts.Rollouts.concat(kept)
        if len(out) == 0:
            out = ro
        elif len(out) > target * n:
            out = out.select(range(target * n))
        return out, {"sampling/batches": batches, "sampling/prompts_drawn": drawn,
                     "sampling/kept_groups": count}

    def _plan(self, step: int, ro) -> tuple[list, list]:
        """(every micro-batch as rendered, the micro-batches with rows left of each mini-batch):
        contexts rendered for each role, tokens routed to the method's losses. Mini-batch j holds
        groups [j G / M, (j + 1) G / M) of the G local groups (M = ``schedule.mini_batches``)."""
        size, m = self.cfg.schedule.micro_batch_size, self.cfg.schedule.mini_batches
        n = self.cfg.sampling.rollouts_per_prompt
        groups = len(ro) // n
        bounds = [(j * groups // m) * n for j in range(m)] + [len(ro)]
        rendered, minis = [], []
        for lo, hi in zip(bounds, bounds[1:]):
            mini = [microbatch.plan(self.cfg, self.renderer, ro, list(range(i, min(i + size, hi))),
                                    device=self.acc.device) for i in range(lo, hi, size)]
            rendered += mini
            minis.append([p for p in mini if p.rows])  # a micro-batch whose rows were all dropped
            if not minis[-1] and self.world > 1:
                raise RuntimeError(
                    f"step {step}: every rollout of a mini-batch of process {self.rank} was dropped as "
                    "over-length, so it has nothing to back-propagate and DDP would stall; raise "
                    "contexts.max_length or lower sampling.max_new_tokens")
        return rendered, minis

    def _backward(self, plans: list, targets: list, units: float, old: list, ref: list) -> list:
        """Loss and backward of every micro-batch of one update; DDP syncs gradients on the last
        one only. ``old``/``ref``: per micro-batch, the sampling / reference policy's log-probs or None."""
        diagnostics = methods.diagnostics_on(self.method, self.cfg.diagnostics.pmi)
        results = []
        for k, (plan, target) in enumerate(zip(plans, targets)):
            sync = nullcontext() if k == len(plans) - 1 else self.acc.no_sync(self.scorer)
            with sync:
                res = microbatch.compute_loss(self.cfg, self.passes, plan, target, units,
                                              diagnostics=diagnostics, antisd_lambda=self._antisd_lambda,
                                              old_logp_B_T=old[k], ref_logp_B_T=ref[k])
                # DDP averages gradients over processes; the loss is already a global mean
                self.acc.backward(res.loss * (self.world * (self.scaler.scale if self.scaler else 1.0)))
            res.loss = res.loss.detach()
            results.append(res)
        return results

    def _update(self, step: int, results: list) -> StepOutcome:
        """Clip, then take one optimizer update (and update the teacher) or skip it when the loss
        or gradient is not finite."""
        loss = self._sum(sum(float(r.loss) for r in results))
        grad_norm = self._clip()
        lr = self.scheduler.get_last_lr()[0]
        finite = math.isfinite(loss) and math.isfinite(grad_norm)
        overflow = (self.scaler is not None and math.isfinite(loss) and not finite
                    and self.scaler.scale > self.scaler.min_scale)
        if finite:
            self.optimizer.step()
            if self.passes.teacher is not None:
                self.passes.teacher.after_step(self.model)
            self.nonfinite_streak = 0
        elif overflow:  # float16: the scaled gradients overflowed; a smaller scale retries
            log.warning("step %d: float16 gradients overflowed at loss scale %g; step skipped, scale "
                        "halved", step, self.scaler.scale)
        else:
            self.nonfinite_streak += 1
            log.warning("step %d: non-finite loss %s / grad norm %s; step skipped", step, loss, grad_norm)
        if self.scaler is not None:
            self.scaler.update(overflow)
        self.optimizer.zero_grad(set_to_none=True)
        return StepOutcome(loss, grad_norm, lr, skipped=not finite)

    def _end_step(self, outcomes: list[StepOutcome]) -> StepOutcome:
        """After a step's updates: the rollout engine takes the new weights, the lr schedule
        advances (per step, applied or skipped); the step's outcome averages its updates' loss
        and gradient norm and counts the skipped ones."""
        if hasattr(self.backend, "load_policy") and not all(o.skipped for o in outcomes):
            with self._full_weights():
                self.backend.load_policy(self.model)  # an engine with its own copy of the weights
        with warnings.catch_warnings():  # a skipped first step advances the lr without an update
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.scheduler.step()
        if len(outcomes) == 1:
            return outcomes[0]
        k = len(outcomes)
        return StepOutcome(sum(o.loss for o in outcomes) / k, sum(o.grad_norm for o in outcomes) / k,
                           outcomes[0].lr, skipped=sum(o.skipped for o in outcomes))

    def _controls(self, step: int, ro) -> dict:
        """Issue 9 controls (wrong reference, blank baseline) every ``diagnostics.controls_every``
        steps, on this process's rollouts (rank 0's values are the ones logged)."""
        every = self.cfg.diagnostics.controls_every
        if not every or step % every or self.passes.base is None:
            return {}
        from selfdistill.models import make_teacher

        from .controls import control_metrics

        t = time.perf_counter()
        out = control_metrics(self.renderer, self.passes.base, make_teacher(self.model, "live"),
                              ro.examples, ro.response_ids, seed=self.cfg.seed + step)
        out["time/controls_s"] = time.perf_counter() - t
        return out

    # ------------------------------------------------------------------ pieces

    def _reduce(self, values: torch.Tensor) -> torch.Tensor:
        """A float64 vector summed over processes (collectives need the device: NCCL)."""
        values = values.to(self.acc.device)
        return self.acc.reduce(values, "sum") if self.world > 1 else values

    def _sum(self, value: float) -> float:
        """Sum of a float over processes."""
        if self.world == 1:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.acc.device)
        return float(self.acc.reduce(t, "sum")[0])

    def _antisd_gate(self, targets) -> float:
        """Anti-sd weight of this step: 0 while the context-conditioned entropy is below
        ``antisd_entropy_gate`` x its warm-up level (the first step's mean, kept in checkpoints)."""
        ent = self._sum(sum(float((t.entropy_B_T * t.context_mask_B_T).sum()) for t in targets))
        n = self._sum(sum(float(t.context_mask_B_T.sum()) for t in targets))
        if n == 0:
            return 0.0
        level = ent / n
        if self.antisd_warmup_entropy is None:
            self.antisd_warmup_entropy = level
        m = self.cfg.method
        return m.antisd_lambda if level >= m.antisd_entropy_gate * self.antisd_warmup_entropy else 0.0

    def _clip(self) -> float:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.scaler is not None:
            self.scaler.unscale_(params)
        max_norm = self.cfg.optimizer.max_grad_norm or float("inf")
        norm = self.acc.clip_grad_norm_(params, max_norm)
        return float(fsdp.full(norm))  # FSDP2: a DTensor holding per-process partial norms

    def _gather_values(self, values: torch.Tensor) -> torch.Tensor:
        """All processes' 1-D float values concatenated (NaN-padded then filtered)."""
        values = values.double().flatten().to(self.acc.device)  # collectives need the device (NCCL)
        if self.world == 1:
            return values
        n = self.acc.gather(torch.tensor([values.numel()], device=self.acc.device))
        padded = torch.full((int(n.max()),), float("nan"), dtype=torch.float64, device=self.acc.device)
        padded[: values.numel()] = values
        allv = self.acc.gather(padded)
        return allv[~torch.isnan(allv)]

    def _nonfinite_message(self) -> str:
        last = checkpoint.latest(self.ckpt_root)
        return (
            f"{self.nonfinite_streak} steps in a row (up to step {self.step}) had a non-finite loss or "
            f"gradient norm, so training stopped (schedule.max_nonfinite_steps="
            f"{self.cfg.schedule.max_nonfinite_steps}). Skipped steps never changed the weights: the "
            f"newest checkpoint ({last}) holds the last good state. Lower optimizer.lr, set "
            f"optimizer.max_grad_norm, or use model.dtype=float32 (this run: {self.hardware.dtype}), "
            "then resume=true."
        )

    # ------------------------------------------------------------------ checkpoints

    def _full_weights(self, when: bool = True):
        """The no-grad phase's context: under FSDP the student all-gathered and every teacher handle's
        own weights with it (``fsdp.gathered``, ``Teacher.gathered``); otherwise nothing. Every
        process enters it at the same points (``when`` must agree across processes)."""
        if not (self.fsdp and when):
            return nullcontext()
        from contextlib import ExitStack

        stack = ExitStack()
        stack.enter_context(fsdp.gathered(self.scorer))
        handles = [self.passes.teacher, self.passes.base, self.passes.live, self.sampling_policy, self.reference]
        for h in {id(h): h for h in handles if h is not None}.values():
            stack.enter_context(h.gathered())
        return stack

    def _trainable(self) -> dict[str, torch.Tensor]:
        if self.fsdp:  # gathered on every process (collectives), written by the main one
            return fsdp.full_state({n: p for n, p in self.model.named_parameters() if p.requires_grad})
        return {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def save(self) -> None:
        """Checkpoint the current step on the main process (all processes call this)."""
        from accelerate.utils import gather_object

        rngs = gather_object([checkpoint.rng_state()]) if self.world > 1 else [checkpoint.rng_state()]
        teacher = self.passes.teacher
        sharded = {}
        if self.fsdp:  # collectives every process takes part in; the main process writes
            sharded = {"trainable": self._trainable(), "optimizer": fsdp.optimizer_state(self.scorer, self.optimizer)}
            if teacher is not None and teacher.mode == "ema":
                sharded["teacher"] = teacher.state_dict()
        if self.acc.is_main_process:
            blobs = sharded or {"trainable": self._trainable(), "optimizer": self.optimizer.state_dict()}
            blobs["scheduler"] = self.scheduler.state_dict()
            if teacher is not None and teacher.mode == "ema" and not self.fsdp:
                blobs["teacher"] = teacher.state_dict()
            for r, state in enumerate(rngs):
                blobs[f"rng-rank{r}"] = state
            state = {"step": self.step, "data": self.stream.position.to_dict(),
                     "metrics_lines": self.logger.lines if self.logger else 0,
                     "nonfinite_streak": self.nonfinite_streak, "world_size": self.world,
                     "antisd_warmup_entropy": self.antisd_warmup_entropy,
                     "loss_scale": self.scaler.state_dict() if self.scaler else None,
                     "method": self.cfg.method.name, "run": self.run_definition}
            if self.fsdp:  # optimizer.pt keyed by parameter name (torch.distributed.checkpoint)
                state["optimizer_format"] = "full_by_name"
            checkpoint.save(self.ckpt_root, self.step, blobs, state, keep_last=self.cfg.checkpoint.keep_last)
        self.acc.wait_for_everyone()

    def _resume(self, plan: resume_guard.ResumePlan) -> int:
        """Load the checkpoint ``plan`` names (checked by resume_guard.inspect) and apply its
        accepted changes; returns the metrics lines to keep."""
        folder = plan.folder
        blobs, state, rng = checkpoint.load(folder, rank=self.rank)
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in blobs["trainable"].items():
                fsdp.copy_full_into(params[name], value)  # a plain copy_ without FSDP
        if state.get("optimizer_format") == "full_by_name":
            fsdp.load_optimizer_state(self.scorer, self.optimizer, blobs["optimizer"])
        elif self.fsdp:
            raise checkpoint.CheckpointError(
                f"{folder} was written without FSDP (its optimizer state is keyed by position); resume it "
                "without FSDP, or start a new output_dir")
        else:
            self.optimizer.load_state_dict(blobs["optimizer"])
        self.scheduler.load_state_dict(blobs["scheduler"])
        if "teacher" in blobs:
            self.passes.teacher.load_state_dict(blobs["teacher"])
        self.stream.position = DataPosition(**state["data"])
        if rng is not None:
            checkpoint.set_rng_state(rng)
        self.step = int(state["step"])
        self.nonfinite_streak = int(state.get("nonfinite_streak", 0))
        self.antisd_warmup_entropy = state.get("antisd_warmup_entropy")
        if self.scaler is not None and state.get("loss_scale"):
            self.scaler.load_state_dict(state["loss_scale"])
        resume_guard.apply_changes(plan, self.cfg, self.optimizer, self.scheduler, self.stream)
        kept = int(state["metrics_lines"])
        if self.acc.is_main_process:
            resume_guard.record(self.out, plan, kept)
            metrics = self.out / "metrics.jsonl"
            logged = len(metrics.read_text().splitlines()) if metrics.is_file() else 0
            resume_guard.announce(plan, kept, logged)
        return kept

    def save_final(self) -> None:
        """``output_dir/final``: the adapter (LoRA) or the model, with the tokenizer."""
        self.acc.wait_for_everyone()
        # FSDP: the full state dict gathered on every process (collectives), saved by the main one
        weights = fsdp.full_state(self.model.state_dict()) if self.fsdp else None
        if self.acc.is_main_process:
            final = self.out / "final"
            self.model.save_pretrained(str(final), **({"state_dict": weights} if weights is not None else {}))
            self.tokenizer.save_pretrained(str(final))

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        if self.rewarder is not None:
            self.rewarder.close()
            self.rewarder = None
        if getattr(self, "periodic_eval", None) is not None:
            self.periodic_eval.close()  # idempotent: its scorer is None once closed
        if hasattr(getattr(self, "backend", None), "close"):  # a vLLM engine frees its memory now
            self.backend.close()


def _check_updates(cfg: TrainConfig, world: int) -> None:
    """Checks of the updates per step that need the number of processes."""
    sch = cfg.schedule
    if (sch.prompts_per_step // world) % sch.mini_batches:
        raise ConfigError(f"schedule.mini_batches={sch.mini_batches} must divide the prompts of each process "
                          f"({sch.prompts_per_step} / {world} processes): mini-batches hold whole groups")
    if cfg.sampling.dynamic_sampling and world > 1:
        raise ConfigError("sampling.dynamic_sampling runs on one process only (refilled groups would differ "
                          "per process): drop it or train on one process")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def train(cfg: TrainConfig, *, rollout_backend=None, accelerator=None) -> Path:
    """Run a training job end to end; returns output_dir (metrics.jsonl, checkpoints, final)."""
    return Trainer(cfg, rollout_backend=rollout_backend, accelerator=accelerator).fit()
