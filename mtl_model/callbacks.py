"""Training callbacks, in the spirit of Hugging Face `TrainerCallback`s.

Everything that watches training without deciding it (the train log rows, python logging, the
console progress bar, a caller's progress reporting) is a callback, so the engine holds no
closures. A callback reads the run's state (`run.global_step`, `run.step_losses`, ...) but must not
change what training does; the one exception is `TrainLogCallback`, which writes `run.log`, the rows
the checkpoint saves with the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mtl_model.train import TrainingRun, TrainResult

log = logging.getLogger("mtl_model.train")


class TrainerCallback:
    """Base class: every hook is a no-op; subclasses override the ones they need.

    Hooks fire only for runs that train (`freeze_policy: all` fires none), in this order:
    `on_train_begin`, then per optimizer step `on_unfreeze` (gradual unfreezing reached a new stage,
    before the step), `on_step_end`, and `on_evaluate` when validation ran; `on_train_end` last.
    """

    def on_train_begin(self, run: TrainingRun) -> None:
        """After setup and any resume; `run.global_step` is where training starts."""

    def on_unfreeze(self, run: TrainingRun, step: int, trainable_params: int) -> None:
        """Gradual unfreezing applied a new stage before optimizer step `step + 1`."""

    def on_step_end(self, run: TrainingRun, step: int, total: int, loss: float) -> None:
        """Optimizer step `step` of `total` is done; `loss` is its weighted loss."""

    def on_evaluate(self, run: TrainingRun, step: int, metrics: dict[str, dict[str, float]]) -> None:
        """Validation metrics per task at `step`; early-stopping bookkeeping is already updated."""

    def on_train_end(self, run: TrainingRun, result: TrainResult) -> None:
        """Training finished (or stopped early); `result` is what `train_multitask` returns."""


class TrainLogCallback(TrainerCallback):
    """The rows of `TrainResult.log` (step, kind train|eval, task, name, value), appended to `run.log`."""

    @staticmethod
    def _row(step: int, kind: str, task: str, name: str, value: float) -> dict:
        return {"step": step, "kind": kind, "task": task, "name": name, "value": value}

    def on_unfreeze(self, run: TrainingRun, step: int, trainable_params: int) -> None:
        run.log.append(self._row(step, "train", "", "trainable_params", float(trainable_params)))

    def on_step_end(self, run: TrainingRun, step: int, total: int, loss: float) -> None:
        run.log.extend(self._row(step, "train", task, "loss", value) for task, value in run.step_losses.items())
        run.log.append(self._row(step, "train", "", "learning_rate", run.learning_rate))

    def on_evaluate(self, run: TrainingRun, step: int, metrics: dict[str, dict[str, float]]) -> None:
        run.log.extend(
            self._row(step, "eval", task, name, float(value))
            for task, values in metrics.items()
            for name, value in values.items()
            if name != "support"
        )
        run.log.append(self._row(step, "eval", "", run.config.early_stopping_metric, run.eval_value))


class LoggingCallback(TrainerCallback):
    """Python `logging` lines on `mtl_model.train`: start, unfreezing, ~20 loss lines, evaluations, the end."""

    def __init__(self, lines: int = 20) -> None:
        self.lines = lines

    def on_train_begin(self, run: TrainingRun) -> None:
        resumed = f" (resumed from step {run.resumed_from})" if run.resumed_from is not None else ""
        log.info(
            "training %d steps, freeze policy %s, %s on %s%s",
            run.total_steps,
            run.config.freeze_policy,
            run.precision,
            run.device,
            resumed,
        )

    def on_unfreeze(self, run: TrainingRun, step: int, trainable_params: int) -> None:
        log.info("step %d: gradual unfreezing, %d parameters train", step, trainable_params)

    def on_step_end(self, run: TrainingRun, step: int, total: int, loss: float) -> None:
        if step == 1 or step % max(1, total // self.lines) == 0 or step == total:
            log.info("step %d/%d loss %.4f lr %.3g", step, total, loss, run.learning_rate)

    def on_evaluate(self, run: TrainingRun, step: int, metrics: dict[str, dict[str, float]]) -> None:
        log.info(
            "step %d: validation %s %.4f (best %.4f at step %d)%s",
            step,
            run.config.early_stopping_metric,
            run.eval_value,
            run.best_value,
            run.best_step,
            ", stopping early" if run.stopped_early else "",
        )

    def on_train_end(self, run: TrainingRun, result: TrainResult) -> None:
        log.info("trained %d steps in %.1fs (%d examples)", result.steps, result.seconds, result.examples_seen)


class ProgressBarCallback(TrainerCallback):
    """A tqdm bar on stderr with loss and examples/s; python logging goes through `tqdm.write` meanwhile,
    so log lines print above the bar instead of breaking it."""

    def __init__(self) -> None:
        self.bar = None

    def on_train_begin(self, run: TrainingRun) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        # Both are undone by `run.cleanup()`, also when training raises.
        run.resources.enter_context(logging_redirect_tqdm(loggers=[logging.getLogger()]))
        self.bar = run.resources.enter_context(
            tqdm(total=run.total_steps, initial=run.global_step, desc="train", unit="step", dynamic_ncols=True)
        )

    def on_step_end(self, run: TrainingRun, step: int, total: int, loss: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.4f}", ex_per_s=f"{run.examples_seen / max(run.seconds, 1e-9):.0f}")
        self.bar.update(1)

    def on_train_end(self, run: TrainingRun, result: TrainResult) -> None:
        self.bar.close()


class StepFunctionCallback(TrainerCallback):
    """Adapts the older `on_step(step, total, loss)` function argument of `train_multitask`."""

    def __init__(self, function: Callable[[int, int, float], None]) -> None:
        self.function = function

    def on_step_end(self, run: TrainingRun, step: int, total: int, loss: float) -> None:
        self.function(step, total, loss)
