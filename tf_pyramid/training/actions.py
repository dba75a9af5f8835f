"""What the training loop does besides training steps, one small action each.

The loop (`Trainer.train`) runs compiled chunks of steps; after each chunk it calls
`after_steps(trainer, step, logs)` on every action, and at the end of each epoch
`after_epoch(trainer, epoch, logs)`. `steps_until(step)` lets an action bound the next chunk (a
checkpoint lands exactly on its step), and `close()` runs when the loop stops for any reason.
"""
import sys
import time

import keras
import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2

from tf_pyramid.evaluators import base as evaluators_base
from tf_pyramid.evaluators import per_level


def write_scalar(name, value, step):
    """The record `tf.summary.scalar` writes, through the core `tf.summary.write`: the
    `tensorboard` package, which implements `tf.summary.scalar`, need not be installed."""
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    return tf.summary.write(name, tf.constant(float(value), tf.float32), step=step,
                            metadata=metadata.SerializeToString())


def format_logs(logs):
    return ", ".join(f"{k} {v:.4g}" for k, v in logs.items())


class Action:
    """A no-op action; subclasses override what they need."""

    def steps_until(self, step):  # noqa: ARG002
        """Steps the next chunk may run from `step` (None: no bound)."""
        return None

    def before_training(self, trainer, step):
        """Once, before the first chunk (`step`: where the run starts or resumes)."""

    def before_steps(self, trainer, step, num_steps):
        """Before each chunk of `num_steps` steps from `step`."""

    def after_steps(self, trainer, step, logs):
        pass

    def after_epoch(self, trainer, epoch, logs):
        pass

    def close(self):
        pass


class Progress(Action):
    """Keras's console convention: a live progress bar on a terminal, one line per epoch when
    stdout is a file or a pipe (CI, nohup, a log file). Shows the model's own metrics."""

    def __init__(self, steps_per_epoch, epochs, enabled=True, interactive=None):
        self.steps_per_epoch, self.epochs, self.enabled = steps_per_epoch, epochs, enabled
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self._bar, self._epoch = None, None

    def _start(self, trainer, step):
        epoch = step // self.steps_per_epoch
        if self._epoch == epoch:
            return
        self._epoch = epoch
        if self.enabled and self.interactive:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)
        self._bar = keras.utils.Progbar(
            self.steps_per_epoch, verbose=(1 if self.interactive else 0) if self.enabled else 0,
            stateful_metrics=trainer.metric_names, unit_name="step")
        self._started = time.time()

    def after_steps(self, trainer, step, logs):
        self._start(trainer, step - 1)
        shown = [(k, v) for k, v in logs.items() if k in trainer.metric_names]
        self._bar.update(step - self._epoch * self.steps_per_epoch, shown, finalize=False)

    def after_epoch(self, trainer, epoch, logs):
        if not self.enabled:
            return
        if self.interactive:
            self._bar.update(self.steps_per_epoch, finalize=True)
        else:
            shown = {k: v for k, v in logs.items() if k in trainer.metric_names}
            print(f"Epoch {epoch + 1}/{self.epochs} ({time.time() - self._started:.0f} s): "
                  f"{format_logs(shown)}", flush=True)


class TrainingSummaries(Action):
    """TensorBoard scalars of the training logs every `every` steps and at every epoch end."""

    def __init__(self, writer, every):
        self.writer, self.every = writer, every

    def _write(self, step, logs):
        with self.writer.as_default(step=step):
            for name, value in logs.items():
                write_scalar(name, value, step)

    def after_steps(self, trainer, step, logs):
        if step % self.every < trainer.last_chunk:
            self._write(step, logs)

    def after_epoch(self, trainer, epoch, logs):
        self._write(trainer.current_step, logs)

    def close(self):
        self.writer.flush()


class PeriodicCheckpoint(Action):
    """A checkpoint every `every` steps and at every epoch end."""

    def __init__(self, every):
        self.every = every

    def steps_until(self, step):
        return (step // self.every + 1) * self.every - step

    def after_steps(self, trainer, step, logs):
        if step % self.every == 0 and step % trainer.steps_per_epoch:
            trainer.save_checkpoint("periodic")

    def after_epoch(self, trainer, epoch, logs):
        trainer.save_checkpoint("epoch end")


class Validation(Action):
    """Per-level evaluation of the validation split after every epoch (logged and summarised)."""

    def __init__(self, dataset, writer, split):
        self.dataset, self.writer, self.split = dataset, writer, split

    def after_epoch(self, trainer, epoch, logs):
        scalars = per_level.scalar_logs(trainer.evaluator.evaluate(
            self.dataset, data_info=trainer.data_infos.get(self.split),
            allow_incomplete=trainer.config.evaluation.allow_incomplete))
        with self.writer.as_default(step=trainer.current_step):
            for name, value in scalars.items():
                write_scalar(name, value, trainer.current_step)
        trainer.validation_logs = scalars  # for the Keras callbacks' epoch logs (val_*)
        logging.info("Epoch %d validation (%s): %s", epoch + 1, self.split, format_logs(scalars))

    def close(self):
        self.writer.flush()


def write_evaluations(writer, step, results, instances):
    """The scalars of evaluator results (`base.run_evaluators`) as TensorBoard summaries
    named `<evaluator>/<scalar>`; returns them."""
    scalars = evaluators_base.scalars_of(results, instances)
    with writer.as_default(step=step):
        for name, value in scalars.items():
            write_scalar(name, value, step)
    writer.flush()
    return scalars


class ScheduledEvaluation(Action):
    """The configured evaluators (`--evaluators`) after every `every` epochs, but not after the
    last one (`Trainer.finish` runs them then): TensorBoard `logs/evaluation` and one log line
    per evaluator."""

    def __init__(self, every, writer):
        self.every, self.writer = every, writer

    def after_epoch(self, trainer, epoch, logs):
        if (epoch + 1) % self.every or trainer.current_step >= trainer.total_steps:
            return
        results = trainer.run_evaluators()
        write_evaluations(self.writer, trainer.current_step, results, trainer.evaluators)
        for name, result in results.items():
            logging.info("Epoch %d %s: %s", epoch + 1, name, result.get("skipped") or
                         format_logs(trainer.evaluators[name].scalars(result)))

    def close(self):
        self.writer.flush()


class KerasCallbacks(Action):
    """Keras callbacks (e.g. `tf_pyramid.callbacks.AttentionImages`, `EarlyStopping`,
    `TerminateOnNaN`), called as `model.fit` calls them with `steps_per_execution`:

    * `on_train_begin` once (the model's `stop_training` reset to False), `on_train_end` when
      the loop stops for any reason;
    * `on_epoch_begin(epoch)` / `on_epoch_end(epoch, logs)` (0-based epochs; the epoch logs
      hold the training logs and, with a validation split, its scalars prefixed `val_`);
    * batch hooks once per compiled chunk (`--steps_per_loop`, bounded by checkpoints and epoch
      ends), not per step: `on_train_batch_begin(first)` and `on_train_batch_end(last, logs)`
      with `first` / `last` the chunk's step indices within the epoch and `logs` the chunk's
      last step's logs.

    The trainer stops when a callback sets `model.stop_training` (see `Trainer.train`).
    """

    def __init__(self, callbacks, model):
        self.callbacks = list(callbacks)
        self.model = model
        self._epoch = None
        self._chunk_start = 0
        self._begun = False
        for callback in self.callbacks:
            callback.set_model(model)

    def _epoch_index(self, trainer, step):
        return step // trainer.steps_per_epoch

    def before_training(self, trainer, step):
        self.model.stop_training = False
        self._begun = True
        for callback in self.callbacks:
            callback.on_train_begin({})

    def before_steps(self, trainer, step, num_steps):
        epoch = self._epoch_index(trainer, step)
        if epoch != self._epoch:
            self._epoch = epoch
            for callback in self.callbacks:
                callback.on_epoch_begin(epoch, {})
        self._chunk_start = step - epoch * trainer.steps_per_epoch
        for callback in self.callbacks:
            callback.on_train_batch_begin(self._chunk_start, {})

    def after_steps(self, trainer, step, logs):
        last = step - 1 - self._epoch * trainer.steps_per_epoch
        for callback in self.callbacks:
            callback.on_train_batch_end(last, dict(logs))

    def after_epoch(self, trainer, epoch, logs):
        epoch_logs = dict(logs)
        epoch_logs.update({f"val_{k}": v
                           for k, v in (getattr(trainer, "validation_logs", None) or {}).items()})
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, epoch_logs)

    def close(self):
        if not self._begun:
            return
        for callback in self.callbacks:
            callback.on_train_end({})


HPARAMS_LOG = "hparams"  # DIR/logs/hparams: the run's one HParams session


def run_hparams(config, replicas=1):
    """The run's hyperparameters for TensorBoard's HParams view (numbers, strings, booleans:
    lists are joined with commas, unset values are "none")."""
    c = config
    values = {
        "experiment": c.experiment, "model": c.model.name, "levels": c.model.levels,
        "resolution": c.model.resolution, "policy": c.model.policy,
        "dataset": c.data.dataset, "variant": c.data.variant,
        "c_t": ",".join(f"{float(v):g}" for v in c.learning_rule.target_locations),
        "c_r": c.learning_rule.target_cell_probability,
        "lambda_f": c.learning_rule.lambda_f, "lambda_t": c.learning_rule.lambda_t,
        "lambda_r": c.learning_rule.lambda_r, "mc_samples": c.learning_rule.mc_samples,
        "level_weights": ",".join(f"{float(v):g}" for v in c.learning_rule.level_weights),
        "learning_rate": c.schedule.learning_rate, "batch_size": c.schedule.batch_size,
        "epochs": c.schedule.epochs, "seed": c.trainer.seed, "strategy": c.trainer.strategy,
        "replicas": replicas,
        "dtype_policy": getattr(c.trainer, "dtype_policy", None)
        or getattr(c.model, "dtype_policy", None) or keras.config.dtype_policy().name,
        "init_from": c.trainer.init_from,
    }
    return {k: ("none" if v is None else v if isinstance(v, (bool, int, float, str)) else str(v))
            for k, v in values.items()}


def run_metric_scalars(metrics):
    """`hparams/<name>` scalars of a run's metrics.json: accuracy, attended cells and MACs per
    level (and the deterministic threshold figures of a sampled evaluation)."""
    scalars = {}
    for prefix, result in (("", metrics), ("threshold_", metrics.get("threshold") or {})):
        for entry in result.get("levels") or []:
            for key in ("accuracy", "mean_locations", "mean_macs"):
                if entry.get(key) is not None:
                    scalars[f"hparams/{prefix}level_{entry['level']}_{key}"] = float(entry[key])
    return scalars


def write_hparams(log_dir, config, metrics, step, replicas=1):
    """Writes the run's HParams session (hyperparameters, and its final metrics as scalars) to
    `log_dir` (`DIR/logs/hparams`), once: a directory that already holds it is left alone, so
    a rerun of a finished (or resumed) run adds no second session. Returns whether it wrote."""
    from tensorboard.plugins.hparams import api as hp  # noqa: PLC0415

    from tf_pyramid.runs import files  # noqa: PLC0415
    if files.exists(log_dir) and any(".tfevents." in name for name in files.listdir(log_dir)):
        return False
    hparams = run_hparams(config, replicas)
    scalars = run_metric_scalars(metrics)
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=step):
        hp.hparams_config(hparams=[hp.HParam(name) for name in hparams],
                          metrics=[hp.Metric(tag) for tag in scalars])
        hp.hparams(hparams, trial_id=config.trainer.model_dir)
        for tag, value in scalars.items():
            write_scalar(tag, value, step)
    writer.flush()
    writer.close()
    return True
