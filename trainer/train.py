"""SSL-SaN / SSL-TIE training loop: `accelerate launch trainer/train.py --config trainer/configs/ssl_san.yaml [k=v ...]`.

Runs as a file under `accelerate launch` (1..N GPUs, or several gloo processes on the CPU:
`accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no
trainer/train.py ...`), so the repository root is put on sys.path first to make `trainer` and `pipeline` importable.
Also `python -m trainer.train` for one process.

Per optimizer step: grad_accum micro-batches (DDP gradient sync only on the last), each through `Objective`
(SSL-TIE's two views + equivariance + silence/noise), Adam, optional grad clipping. ReduceLROnPlateau steps on a
validation metric of the held-out `val` split. Output in runs/<name>/: config.yaml, log.jsonl (every loss term, lr,
samples/s, data-wait), tb/ (TensorBoard), checkpoints/ (trainer.checkpoint). SIGTERM / SIGUSR1 (Slurm's warning
before preemption or the time limit), Ctrl-C (SIGINT), or a file runs/<name>/STOP -> checkpoint at the next step
boundary and exit 0; `--resume auto` (default) continues from the latest intact checkpoint, exactly (RNG states and
the loader position are restored), and refuses a recipe that differs from the checkpoint's unless
`--override-recipe` (then the new values are applied and recorded). One training per run folder (`.lock`). A
non-finite loss stops the run with `error: ... at step N` (exit 1) and writes no checkpoint. `seeds=[1,2,3]` trains
the recipe once per seed, one after the other, into runs/<name>/seed-<k>/ (a stop request or STOP file in
runs/<name>/ ends the list; `--resume auto` continues it).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file by `accelerate launch trainer/train.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib
import dataclasses
import json
import signal
import time

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from tqdm import tqdm

from pipeline.common.cli import Parser, UserError, run_cli
from pipeline.common.config import ConfigError, load_config, save_config, to_dict
from pipeline.common.outputs import OutputBusy, writer_lock
from trainer import checkpoint as ckpt
from trainer.config import TrainConfig, recipe_differences
from trainer.data import DevicePrefetch, build_loaders
from trainer.equivariance import draw_transform
from trainer.model import AVENet
from trainer.objective import Objective, negative_inputs
from trainer.validation import Validator

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def control_group(world: int, device: torch.device):
    """The process group the ranks agree on stop requests through: a host-side (gloo) one, so that agreeing at every
    step never waits for a GPU; the default group where it is gloo already; None for one process."""
    if world == 1:
        return None
    return dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD


def compile_count() -> int:
    """Frames torch.compile has compiled in this process so far (first compilations and recompilations)."""
    from torch._dynamo.utils import counters
    return int(counters["frames"]["total"])


class TrainingError(UserError):
    """The run cannot go on (non-finite loss, processes out of sync, a plateau metric validation does not give);
    the message names the step or option. Exit status 1: the run failed, it was not refused."""

    status = 1


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str = "auto", override_recipe: bool = False,
                 stop_file: Path | None = None):
        self.cfg = cfg
        self.override_recipe = override_recipe
        self.stopped = False
        cpu = not torch.cuda.is_available()
        self.acc = Accelerator(cpu=cpu, mixed_precision=PRECISION[cfg.precision])
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.device = self.acc.device
        self.run_dir = Path(cfg.output_root) / cfg.name
        self.stop_file = stop_file or self.run_dir / "STOP"
        self._hold_run_dir()
        try:
            self._build(resume)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the run folder (its lock file goes)."""
        self._lock.close()

    def _build(self, resume: str) -> None:
        cfg = self.cfg
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        set_seed(cfg.seed)  # same on every rank: identical initial weights (DDP also broadcasts rank 0's)
        self.model = AVENet(cfg.model)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.compile:
            self.model.imgnet.compile()
            self.model.audnet.compile()
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                                     fused=True)   # one kernel for all parameters; its step counts stay on the device
        self.objective, self.optimizer = self.acc.prepare(Objective(self.model, cfg), optimizer)
        self.params = params
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=cfg.optim.plateau_mode, factor=cfg.optim.plateau_factor,
            patience=cfg.optim.plateau_patience, min_lr=cfg.optim.min_lr)
        # the trainer's own random streams (transforms on the CPU, noise on the device), one pair per process
        self.aug_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 2 * self.rank + 1)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + 2 * self.rank + 2)
        self.train_loader, val_loader = build_loaders(cfg, self.rank, self.world, self.device)
        self.control = control_group(self.world, self.device)
        self.validator = Validator(cfg, val_loader, self.acc)
        self.step = 0
        self.epoch = 0
        self.best: float | None = None
        self.metrics: dict[str, float] = {}
        self.stop_signal = 0
        self.bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self.pending_loader_state: dict | None = None
        self.validated_at = self.best_at = -1
        self._resume(resume)

    def _hold_run_dir(self) -> None:
        """One training per run folder: the main process holds `run_dir/.lock` for the whole run (every process
        learns whether it got it, so a refused run ends on all ranks instead of leaving them waiting)."""
        self._lock = contextlib.ExitStack()
        busy: OutputBusy | None = None
        if self.acc.is_main_process:
            try:
                self._lock.enter_context(writer_lock(self.run_dir, f"run {self.run_dir}"))
            except OutputBusy as exc:
                busy = exc
        refused = torch.tensor(float(busy is not None), device=self.acc.device)
        if self.world > 1:
            refused = self.acc.reduce(refused, reduction="sum")
        if busy is not None:
            raise busy
        if bool(refused.item() > 0):
            raise OutputBusy(f"run {self.run_dir}: another training holds it (see the main process's message)")

    # ---------------------------------------------------------------- resume / checkpoint
    def _resume(self, resume: str) -> None:
        if resume == "none":
            return
        if resume == "auto":
            step_dir, skipped = ckpt.latest_intact(self.run_dir)       # checked there
            for problem in skipped:
                self.acc.print(f"warning: {problem}; passed over for an earlier checkpoint")
            if step_dir is None:
                return
            state = ckpt.load_state(step_dir)
        else:
            step_dir = ckpt.resolve(resume, "latest")
            state = ckpt.check_checkpoint(step_dir)
        changed = recipe_differences(to_dict(ckpt.load_train_config(step_dir)), to_dict(self.cfg))
        if changed and not self.override_recipe:
            raise ConfigError(f"{step_dir}: this recipe differs from the checkpoint's ({'; '.join(changed)}); resume "
                              f"with the checkpoint's values, or add --override-recipe to apply and record the new "
                              f"ones")
        ckpt.load_weights(self.model, step_dir)
        self.optimizer.optimizer.load_state_dict(ckpt.load_optimizer(step_dir, state))
        self.scheduler.load_state_dict(state["scheduler"])
        if changed:
            self._apply_recipe_changes(changed)
        if self.acc.scaler is not None and state.get("scaler"):
            self.acc.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.best = state["step"], state["epoch"], state.get("best")
        ranks = state["ranks"]
        if len(ranks) == self.world:
            ckpt.set_rng_state(ranks[self.rank]["rng"], {"aug": self.aug_gen, "noise": self.noise_gen})
            self.pending_loader_state = ckpt.from_json(ranks[self.rank]["loader"])
        else:  # another number of processes: positions do not map; restart the interrupted epoch from its start
            self.acc.print(f"warning: {step_dir} was written by {len(ranks)} processes, this run has {self.world}: "
                           f"restarting epoch {self.epoch} from its first batch")
        self.acc.print(f"resumed from {step_dir} (step {self.step}, epoch {self.epoch})")

    def _apply_recipe_changes(self, changed: list[str]) -> None:
        """--override-recipe: the new optimizer and scheduler values replace the restored ones (the rest of the recipe
        is read from the config at every step); the new lr becomes the current learning rate."""
        o = self.cfg.optim
        for group in self.optimizer.optimizer.param_groups:
            group["lr"], group["weight_decay"] = o.lr, o.weight_decay
        sch = self.scheduler
        sch.factor, sch.patience = o.plateau_factor, o.plateau_patience
        sch.min_lrs = [o.min_lr] * len(sch.min_lrs)
        sch._last_lr = [o.lr] * len(sch.min_lrs)
        if sch.mode != o.plateau_mode or any(k.startswith("optim.plateau_metric") for k in changed):
            sch._init_is_better(mode=o.plateau_mode, threshold=sch.threshold, threshold_mode=sch.threshold_mode)
            sch._reset()
            self.best = None
        self.acc.print(f"--override-recipe: applying {'; '.join(changed)}")

    def save(self, epoch_done: bool) -> None:
        """Checkpoint at a step boundary: weights, optimizer, scheduler, every process's RNG and loader position."""
        self._check_finite()
        loader_state = None if epoch_done else ckpt.to_json(self.train_loader.state_dict())
        per_rank = {"rng": ckpt.rng_state({"aug": self.aug_gen, "noise": self.noise_gen}), "loader": loader_state,
                    "params_sha256": ckpt.params_digest(self.model)}
        ranks = gather_object([per_rank]) if self.world > 1 else [per_rank]
        if len({r["params_sha256"] for r in ranks}) > 1:
            raise TrainingError(f"step {self.step}: the processes' weights differ (DDP out of sync); not saved")
        if self.acc.is_main_process:
            state = {"epoch": self.epoch + 1 if epoch_done else self.epoch, "world_size": self.world,
                     "scheduler": self.scheduler.state_dict(), "best": self.best, "metrics": self.metrics,
                     "scaler": self.acc.scaler.state_dict() if self.acc.scaler is not None else None,
                     "ranks": ranks}
            ckpt.save_checkpoint(self.run_dir, self.step, self.model, self.optimizer.optimizer.state_dict(), state,
                                 self.cfg, self.cfg.keep_checkpoints)
        self.acc.wait_for_everyone()

    def _check_finite(self) -> None:
        steps = self.acc.gather(self.bad_step.reshape(1)) if self.world > 1 else self.bad_step.reshape(1)
        steps = steps[steps >= 0]
        if steps.numel():
            first = int(steps.min().item())
            raise TrainingError(f"non-finite loss at step {first} (run {self.run_dir}); stopped, no checkpoint "
                                f"written after step {first - 1}")

    # ---------------------------------------------------------------- one optimizer step
    def _micro_step(self, batch, sync: bool) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
        image = batch.image.contiguous(memory_format=mf)         # on the device already (DevicePrefetch)
        logmel = batch.logmel.contiguous(memory_format=mf)
        silence, noise = negative_inputs(cfg, logmel, self.noise_gen)
        tf = draw_transform(image.shape[0], cfg.equivariance, self.aug_gen) if cfg.equivariance.enabled else None
        ctx = contextlib.nullcontext() if sync else self.acc.no_sync(self.objective)
        with ctx:
            terms = self.objective(image, logmel, silence, noise, tf)
            self.acc.backward(terms["loss"] / cfg.optim.grad_accum)
        return terms

    def _optimizer_step(self, micro_batches) -> dict[str, torch.Tensor]:
        n = len(micro_batches)
        totals: dict[str, torch.Tensor] = {}
        for k, batch in enumerate(micro_batches):
            terms = self._micro_step(batch, sync=k == n - 1)
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value.detach().float() / n
        finite = torch.isfinite(totals["loss"])
        self.bad_step = torch.where(~finite & (self.bad_step < 0), torch.full_like(self.bad_step, self.step + 1),
                                    self.bad_step)
        if self.cfg.optim.grad_clip > 0:
            self.acc.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return totals

    # ---------------------------------------------------------------- validation
    def _validate(self) -> dict[str, float]:
        return self.validator.run(self.acc.unwrap_model(self.objective))

    def _after_validation(self, metrics: dict[str, float]) -> bool:
        """Step the plateau scheduler; returns True when this step is the best so far."""
        self.metrics = metrics
        key = self.cfg.optim.plateau_metric
        if key not in metrics:
            raise TrainingError(f"optim.plateau_metric={key!r} is not a validation metric; have {sorted(metrics)}")
        value = metrics[key]
        self.scheduler.step(value)
        better = self.best is None or (value < self.best if self.cfg.optim.plateau_mode == "min" else value > self.best)
        if better:
            self.best = value
        return better

    # ---------------------------------------------------------------- main loop
    def _on_signal(self, signum, _frame) -> None:
        self.stop_signal = signum
        if signum == signal.SIGINT:       # a second Ctrl-C interrupts at once
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _stop_requested(self) -> bool:
        """A signal reached this process, or a STOP file sits in the run folder (slurm/train.sbatch writes it on
        Slurm's time-limit warning, so no launcher process is ever signalled); any rank's request stops all (the
        processes agree over the host-side `control` group)."""
        stop = bool(self.stop_signal or self.stop_file.exists())
        if self.world == 1:
            return stop
        flag = torch.tensor([float(stop)])          # on the host: agreeing never waits for a GPU
        dist.all_reduce(flag, group=self.control)
        return flag.tolist()[0] > 0

    def run(self) -> int:
        cfg = self.cfg
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):   # Ctrl-C checkpoints too
            signal.signal(sig, self._on_signal)
        main = self.acc.is_main_process
        tb = log = None
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            from torch.utils.tensorboard import SummaryWriter
            tb = SummaryWriter(str(self.run_dir / "tb"))
            log = open(self.run_dir / "log.jsonl", "a")
            per = cfg.optim.batch_size // (self.world * cfg.optim.grad_accum)
            self.acc.print(f"global batch {cfg.optim.batch_size} = {self.world} processes x {per} x grad_accum "
                           f"{cfg.optim.grad_accum}; device {self.device}; precision {cfg.precision}")
        steps_per_epoch = len(self.train_loader) // cfg.optim.grad_accum
        total = min(cfg.max_steps or 10**12, steps_per_epoch * cfg.epochs)
        bar = tqdm(total=total, initial=self.step, disable=not main, dynamic_ncols=True, desc=cfg.name)
        interval = {"terms": {}, "n": 0, "wait": 0.0, "compiles": 0, "t0": time.perf_counter()}
        if cfg.max_steps and self.step >= cfg.max_steps:
            self.acc.print(f"step {self.step} already reached max_steps={cfg.max_steps}; nothing to do")
            bar.close()
            return 0
        if cfg.val_at_start and self.step == 0:
            self._log_validation(tb, log, self._validate())
        try:
            while self.epoch < cfg.epochs:
                self.train_loader.set_epoch(self.epoch)
                if self.pending_loader_state is not None:
                    self.train_loader.load_state_dict(self.pending_loader_state)
                    self.pending_loader_state = None
                it = iter(DevicePrefetch(self.train_loader, self.device))
                reached_max = False
                while not reached_max:
                    t_wait = time.perf_counter()
                    micro = [b for b in (next(it, None) for _ in range(cfg.optim.grad_accum)) if b is not None]
                    if len(micro) < cfg.optim.grad_accum:
                        break  # end of the epoch (a partial accumulation is dropped, like drop_last)
                    interval["wait"] += time.perf_counter() - t_wait
                    compiled = compile_count()
                    for k, v in self._optimizer_step(micro).items():
                        interval["terms"][k] = interval["terms"].get(k, 0.0) + v
                    interval["compiles"] += compile_count() - compiled
                    interval["n"] += 1
                    bar.update(1)
                    reached_max = bool(cfg.max_steps) and self.step >= cfg.max_steps
                    if self.step % cfg.log_every == 0 or reached_max:
                        self._log(interval, tb, log, bar)
                    if self._stop_requested():                 # at every step: a signal acts at the next step
                        if interval["n"]:
                            self._log(interval, tb, log, bar)
                        self.acc.print(f"stop signal: checkpoint at step {self.step}, exiting (resume with "
                                       f"--resume auto)")
                        self.save(epoch_done=False)
                        self.stopped = True
                        return 0
                    if reached_max:
                        break
                    if cfg.val_every and self.step % cfg.val_every == 0:
                        self._validate_and_mark(tb, log)
                    if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                        self.save(epoch_done=False)
                self._finish(tb, log, epoch_done=not reached_max)
                if reached_max:
                    break
                self.epoch += 1
        finally:
            bar.close()
            if main:
                tb.close()
                log.close()
        return 0

    def _finish(self, tb, log, epoch_done: bool) -> None:
        """End of an epoch (or of max_steps): validate, checkpoint, mark best."""
        self._check_finite()
        best = self._validate_and_mark(tb, log, save_best=False)
        self.save(epoch_done=epoch_done)
        if best and self.acc.is_main_process:
            ckpt.mark_best(self.run_dir, self.step)

    def _validate_and_mark(self, tb, log, save_best: bool = True) -> bool:
        self._check_finite()
        if self.validated_at == self.step:
            return self.best_at == self.step
        self.validated_at = self.step
        metrics = self._validate()
        if not metrics:
            return False
        best = self._after_validation(metrics)
        self._log_validation(tb, log, metrics)
        if best:
            self.best_at = self.step
        if best and save_best:
            self.save(epoch_done=False)
            if self.acc.is_main_process:
                ckpt.mark_best(self.run_dir, self.step)
        return best

    def _log_validation(self, tb, log, metrics: dict[str, float]) -> None:
        if log is None or not metrics:
            return
        log.write(json.dumps({"step": self.step, "epoch": self.epoch, **metrics, "best": self.best}) + "\n")
        log.flush()
        for k, v in metrics.items():
            tb.add_scalar(k, v, self.step)

    def _log(self, interval: dict, tb, log, bar) -> None:
        """One record per `log_every` steps: the interval's mean terms (accumulated on the device; reading them here
        is the interval's one wait for the device, so `step_s` is the true wall time per step), `data_wait_s` (time
        spent waiting for the loader per step), torch.compile frame compilations during the interval's steps."""
        self._check_finite()
        n = max(interval["n"], 1)
        terms = {k: v / n for k, v in interval["terms"].items()}
        if self.world > 1:
            terms = {k: self.acc.reduce(v, reduction="mean") for k, v in terms.items()}
        terms = {k: float(v) for k, v in terms.items()}
        elapsed = time.perf_counter() - interval["t0"]
        record = {"step": self.step, "epoch": self.epoch, **{f"train/{k}": float(v) for k, v in terms.items()},
                  "lr": self.optimizer.optimizer.param_groups[0]["lr"],
                  "samples_per_s": interval["n"] * self.cfg.optim.batch_size / max(elapsed, 1e-9),
                  "step_s": elapsed / n, "data_wait_s": interval["wait"] / n,
                  "compiles": interval["compiles"], "global_batch": self.cfg.optim.batch_size}
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()
            for k, v in record.items():
                if k not in ("step", "epoch"):
                    tb.add_scalar(k, v, self.step)
            bar.set_postfix(loss=f"{record['train/loss']:.4f}", sps=f"{record['samples_per_s']:.1f}")
        interval.update(terms={}, n=0, wait=0.0, compiles=0, t0=time.perf_counter())


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML recipe (trainer/configs/*.yaml)")
    parser.add_argument("--resume", default="auto",
                        help="auto (latest checkpoint of runs/<name> if any), none, or a step/run directory")
    parser.add_argument("--override-recipe", action="store_true",
                        help="resume even though the recipe differs from the checkpoint's, applying the new values")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.batch_size=64 san.lambda_sn=0.5")
    args = parser.parse_args(argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    for run_cfg in seed_runs(cfg):
        trainer = Trainer(run_cfg, args.resume, args.override_recipe,
                          stop_file=Path(cfg.output_root) / cfg.name / "STOP")
        try:
            trainer.run()
        finally:
            trainer.close()
        if trainer.stopped:          # a stop request ends the whole list; --resume auto continues it
            break
    return 0


def seed_runs(cfg: TrainConfig) -> list[TrainConfig]:
    """The runs of a recipe: itself, or with `seeds` one per seed, named <name>/seed-<k> (runs/<name>/seed-<k>/),
    trained one after the other (a finished one is passed over quickly on a resumed list)."""
    if not cfg.seeds:
        return [cfg]
    return [dataclasses.replace(cfg, seed=int(k), seeds=[], name=f"{cfg.name}/seed-{int(k)}") for k in cfg.seeds]


if __name__ == "__main__":
    sys.exit(run_cli(main))
