"""The training loop: `model.train_step` driven through `strategy.run` in a compiled loop.

`Model.fit` is broken under `MultiWorkerMirroredStrategy` in Keras 3 (keras issue 20585), so the
loop is our own and the same code runs on one device, `MirroredStrategy` and
`MultiWorkerMirroredStrategy` (no TPU: see `strategy.py`):

* model and optimizer are created under `strategy.scope()`; every worker reads its own shard of
  the training data (`distribute_datasets_from_function`, `input_context` to `build_dataset`);
  the training stream is repeated and epochs are counted in steps, so workers stay in lockstep;
* logs returned by each replica's `train_step` are averaged across replicas and workers
  explicitly (Keras metrics are local to a replica);
* `tf.train.Checkpoint(model, optimizer, step, epoch)` in `DIR/checkpoints` every
  `--checkpoint_every` steps and at every epoch end; a run that finds a checkpoint resumes from it
  (same step, optimizer state, reward baseline and attention seed state). Only the chief writes
  to `DIR`; other workers write to temporary directories (saving runs collective ops, so all
  workers save);
* faults (`tf_pyramid.runs`): the chief locks `DIR`; a resume compares the flags with the saved
  config.json and falls back to the newest checkpoint that restores; result files are written
  atomically; SIGTERM stops at the next step with a checkpoint and `result["signal"]`. With
  several workers the stop is coordinated: each compiled call also averages the workers' stop
  flags, and all of them save the same step and stop (`_stop_with_the_other_workers`).

Everything besides the steps (progress, summaries, checkpoints, validation, callbacks) is an
action of `training/actions.py`. The export for TF Serving is not the trainer's: `train.py` calls
`tf_pyramid.serving` once the run has finished.
"""
import hashlib
import os
import shutil
import signal
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_pyramid import runs
from tf_pyramid.configs import RunFacts
from tf_pyramid.data import check_split
from tf_pyramid.data import service as data_service
from tf_pyramid.evaluators import base as evaluators_base
from tf_pyramid.evaluators import per_level
from tf_pyramid.runs import checkpoints, files, run_config
from tf_pyramid.runs import lock as run_lock
from tf_pyramid.modeling import is_pyramid
from tf_pyramid.modeling import learning_rule as rules
from tf_pyramid.training import actions as actions_lib
from tf_pyramid.training import loss_spikes
from tf_pyramid.training import strategy as strategy_lib
from tf_pyramid.training.flags import FlagError, ignored_pyramid_flags, resolve_config

STOP_KEY = "_stop"  # the averaged stop flag of the workers, among the compiled step's logs


class Trainer:
    """One training run. `Trainer(config).run()`; `config` is an `ExperimentConfig` (see
    `tf_pyramid.configs`), resolved once here.

    Steps, usable separately (tests): `setup()` builds strategy, data, model, optimizer and
    checkpoint and restores or initialises; `train()` runs the loop; `finish()` evaluates and
    writes metrics.json and model.keras. `callbacks`: Keras callbacks, called as `model.fit`
    calls them (`actions.KerasCallbacks`: train, epoch and per-chunk batch hooks; a callback
    that sets `model.stop_training`, e.g. `EarlyStopping`, ends training early). `planned_init_from`: `--init_from` is an
    earlier stage of the same chain (it exists by the time `setup()` runs).
    """

    def __init__(self, config, strategy=None, callbacks=(), planned_init_from=False):
        self.config = resolve_config(config, planned_init_from)
        self.strategy = strategy
        self.callbacks = list(callbacks)
        self.model_dir = files.absolute(self.config.trainer.model_dir)  # a URL stays a URL
        self.interrupted = False
        self.signal = None  # the signal that interrupted training, if any
        self.lock = None
        self.initial_step = 0
        self.current_step = 0
        self.last_chunk = 0
        self.data_infos = {}  # split -> the DatasetInfo of its (last built) pipeline
        self.data_service = None  # "HOST:PORT" of --data_service's dispatcher (setup)
        self.stopped_by_callback = None  # the step where a callback set model.stop_training
        self.validation_logs = None  # the last validation's scalars (for Keras callbacks)
        self.uniform_start = None  # c_r the location module starts at (fresh pyramid runs)
        self.loss_spikes = loss_spikes.LossSpikeMonitor()  # epochs of this process
        self.result = {}

    # ------------------------------------------------------------------------------------
    # Setup.
    def setup(self):
        c = self.config
        if self.strategy is None:
            self.strategy = strategy_lib.create_strategy(
                c.trainer.strategy, logical_cpus=c.trainer.logical_cpus)
        strategy = self.strategy
        self.task_type, self.task_id, self.is_chief = strategy_lib.worker_info(strategy)
        self.coordinated = self.task_type is not None  # several workers: stop together
        self.write_dir = strategy_lib.write_dir(self.model_dir, strategy)
        files.makedirs(self.write_dir)
        if self.is_chief and self.lock is None:
            self.lock = run_lock.lock_run_dir(self.model_dir)
            for path in files.remove_leftovers(self.model_dir):
                logging.info("Removed %s, left by a process killed while writing it.", path)
        self.replicas = strategy.num_replicas_in_sync
        if c.schedule.batch_size % self.replicas:
            raise FlagError(f"--batch_size={c.schedule.batch_size} is not divisible by the "
                            f"{self.replicas} replicas; use a multiple of {self.replicas}.")
        if c.trainer.seed is not None:
            keras.utils.set_random_seed(c.trainer.seed)
        for key in ignored_pyramid_flags(c):
            logging.warning("--%s is ignored: %s is a baseline (cross-entropy only).", key,
                            c.model.name)
        self.data_service = self._check_data_service()
        self._check_splits()
        self._setup_data()
        self._setup_model()
        restored = self._restore_or_initialize()
        self.manager = checkpoints.manager_after_restore(
            self.checkpoint, os.path.join(self.write_dir, runs.run_directory.CHECKPOINT_DIR),
            self.config.trainer.keep_checkpoints, restored)
        self._write_run_files()
        return self

    def _check_splits(self):
        """The evaluation splits exist and have labels, before any training (a 200-epoch run
        must not fail at its very end)."""
        c = self.config
        wanted = [("eval_split", c.evaluation.split)]
        if c.evaluation.validation_split != "none":
            wanted.append(("validation_split", c.evaluation.validation_split))
        for flag, split in wanted:
            try:
                check_split(c.data.dataset, split, source=c.data.source, data_dir=c.data.data_dir,
                            validation_fraction=c.data.validation_fraction)
            except (ValueError, FileNotFoundError) as error:
                raise FlagError(f"--{flag}={split} cannot be evaluated: {error}") from error

    def _check_data_service(self):
        """`--data_service`'s dispatcher address ("HOST:PORT"), once it answers; None without
        the flag (`data/service.py`)."""
        c = self.config
        if not c.trainer.data_service:
            return None
        if c.data.dataset == "tfrecord":
            raise FlagError("--data_service cannot serve --dataset=tfrecord: its reader recovers "
                            "damaged records in Python, which a tf.data service worker cannot "
                            "run. Use --dataset=folder or imagenet2012, or drop --data_service.")
        try:
            address = data_service.parse_address(c.trainer.data_service)
            data_service.wait_for_dispatcher(address)
        except data_service.DataServiceError as error:
            raise FlagError(str(error)) from None
        logging.info("Training input: the tf.data service at %s://%s (distributed_epoch), with "
                     "%s; evaluation input is read here.", data_service.PROTOCOL, address,
                     "the compiled kernels (%s=1)" % data_service.KERNELS_VARIABLE
                     if data_service.kernels_on_workers() else "TensorFlow's ops")
        self.result["data_service"] = address
        return address

    def _setup_data(self):
        c = self.config
        _, self.train_info = self._dataset("train", training=True)
        self.train_examples = self.train_info.num_examples
        if self.train_examples is None and not c.schedule.steps_per_epoch:
            raise FlagError(f"--dataset={c.data.dataset} does not know its size: set "
                            "--steps_per_epoch.")
        steps = (self.train_examples // c.schedule.batch_size) if self.train_examples else None
        if steps == 0:
            raise FlagError(f"The training split has {self.train_examples} examples, fewer than "
                            f"--batch_size={c.schedule.batch_size}; lower --batch_size.")
        if c.schedule.steps_per_epoch:
            steps = min(steps, c.schedule.steps_per_epoch) if steps else c.schedule.steps_per_epoch
        self.steps_per_epoch = steps
        self.total_steps = steps * c.schedule.epochs
        mnist_options = (f" ({c.data.variant}, source {c.data.source})"  # they apply to MNIST only
                         if c.data.dataset == "mnist" else "")
        logging.info("Training data: %s/%s%s %s examples, %d classes, %s; %d "
                     "steps/epoch x %d epochs = %d steps, global batch %d on %d replica(s).",
                     c.data.dataset, "train", mnist_options, self.train_examples,
                     self.train_info.num_classes, self.train_info.input_convention, steps,
                     c.schedule.epochs, self.total_steps, c.schedule.batch_size, self.replicas)

    def _setup_model(self):
        c = self.config
        with self.strategy.scope():
            self.model = runs.build_from_config(
                c, self.train_info.num_classes, self.train_info.input_convention.get_config())
            self.schedule = runs.run_directory.learning_rate_schedule(c, self.total_steps)
            self.optimizer = runs.run_directory.make_optimizer(self.schedule,
                                                               c.model.dtype_policy)
            self.model.compile(optimizer=self.optimizer,
                               learning_rule=c.learning_rule.to_learning_rule(
                                   is_pyramid(c.model.name)))
            self.optimizer.build(self.model.trainable_variables)
            self._start_attention_uniform()
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch",
                                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.metric_names = tuple(m.name for m in self.model.metrics)
        self.checkpoint = runs.checkpoint_for(self.model, optimizer=self.optimizer,
                                              step=self.step, epoch=self.epoch)
        self.checkpoint_dir = os.path.join(self.model_dir, runs.run_directory.CHECKPOINT_DIR)
        self.evaluator = per_level.LevelStatistics(self.model, self.strategy, c.model.policy)
        self.evaluators = {"per_level": per_level.PerLevel(c, statistics=self.evaluator)}
        costs = self.model.module_costs()
        params = sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)
        logging.info("Model %s: %d levels, %d px input, %s trainable parameters, MACs per "
                     "application %s.", c.model.name, c.model.levels, c.model.resolution, f"{params:,}",
                     {k: f"{v:,}" for k, v in costs.items()})
        logging.info("Learning rule: %s", self.model.learning_rule)

    def _start_attention_uniform(self):
        """Starts the location module at the attention the rule aims at (every cell with
        probability c_r), before a checkpoint or `--init_from` may overwrite it."""
        if not is_pyramid(self.config.model.name):
            return
        q = rules.initial_cell_probability(self.model.learning_rule, self.config.model.levels)
        if q is None:
            return
        self.model.location_module.initialize_uniform_policy(q)
        self.uniform_start = q

    def _dataset(self, split, training, input_context=None, for_service=False):
        c = self.config
        try:
            return runs.run_directory.build_run_dataset(
                c, split, training=training, resolution=c.model.resolution,
                class_names=runs.read_class_names(self.model_dir), input_context=input_context,
                for_service=for_service)
        except (ValueError, FileNotFoundError, AssertionError) as error:
            raise FlagError(f"Cannot read --dataset={c.data.dataset} split {split!r}: {error} "
                            "Check --dataset, --source and --data_dir.") from error

    def _distributed(self, split, training):
        def dataset_fn(input_context):
            if training and self.data_service:
                return self._service_dataset(split, input_context)
            dataset, info = self._dataset(split, training, input_context)
            self.data_infos[split] = info  # its counters say what a pass lost
            return dataset.repeat() if training else dataset
        options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
        return self.strategy.distribute_datasets_from_function(dataset_fn, options)

    def _service_dataset(self, split, input_context):
        """The training stream produced by the tf.data service's workers: the same pipeline
        for every trainer worker (unsharded, per-replica batches), built with the ops the
        workers can run, repeated, in one job per run and start (`data/service.py`)."""
        with data_service.worker_ops():
            dataset, info = self._dataset(split, True, data_service.whole_data_context(
                input_context), for_service=True)
        self.data_infos[split] = info
        job = data_service.job_name(self.model_dir, self.current_step)
        try:
            return data_service.distribute(dataset, self.data_service, job)
        except data_service.DataServiceError as error:
            raise FlagError(str(error)) from None

    def _restore_or_initialize(self):
        """Resumes from the newest checkpoint that restores (damaged newer ones are kept aside),
        after checking that the flags still fit it; else `--init_from` or scratch."""
        c = self.config
        if checkpoints.has_checkpoints(self.checkpoint_dir):
            run_config.check_resume(self.model_dir, c, {
                "num_classes": self.train_info.num_classes, "channels": self.train_info.channels,
                "input_convention": self.train_info.input_convention.get_config()})
        restored = checkpoints.restore_newest(self.checkpoint, self.checkpoint_dir)
        if self.is_chief:
            checkpoints.keep_damaged(self.checkpoint_dir, restored)
        latest = restored.path
        if latest:
            self.initial_step = int(self.step.numpy())
            logging.info("Resuming from %s: step %d of %d (epoch %d), optimizer iterations %d.",
                         latest, self.initial_step, self.total_steps, int(self.epoch.numpy()),
                         int(self.optimizer.iterations.numpy()))
            if c.trainer.init_from:
                logging.info("--init_from=%s is ignored: the run resumes from its own checkpoint.",
                             c.trainer.init_from)
            return restored
        if c.trainer.init_from:
            try:
                source, where = runs.load_run_model(c.trainer.init_from, compile=True)
                runs.check_same_inputs(source, self.train_info.input_convention.get_config(),
                                       where)
                with self.strategy.scope():
                    copied = runs.copy_module_weights(source, self.model)
            except (ValueError, FileNotFoundError) as error:
                raise FlagError(f"--init_from={c.trainer.init_from} cannot start this run: "
                                f"{error}") from None
            logging.info("Initialised %d module weight arrays from %s (%s levels -> %d levels).",
                         copied, where, getattr(source, "levels", 1), c.model.levels)
        else:
            logging.info("Starting from scratch (no checkpoint in %s).", self.checkpoint_dir)
            if self.uniform_start is not None:
                logging.info("Location module starts uniform: every cell attended with "
                             "probability %.4f (c_r) for every image.", self.uniform_start)
        return restored

    def _write_run_files(self):
        if not self.is_chief:
            return
        config = self.config.replace(run=RunFacts(
            num_classes=self.train_info.num_classes, channels=self.train_info.channels,
            input_convention=self.train_info.input_convention.get_config(),
            train_examples=self.train_examples, steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps, num_replicas=self.replicas,
            lr_boundary_steps=list(self.schedule.boundary_steps()),
            tensorflow=tf.__version__, keras=keras.__version__))
        run_config.write_config(self.model_dir, config, step=self.initial_step)
        if self.train_info.class_names:
            runs.write_class_names(self.model_dir, self.train_info.class_names)

    # ------------------------------------------------------------------------------------
    # Training.
    def _make_train_function(self):
        strategy, model = self.strategy, self.model

        def last_step(batch, stop_flag):
            logs = dict(model.train_step(batch))
            logs[STOP_KEY] = tf.identity(stop_flag)  # averaged below: > 0 when any worker stops
            return logs

        @tf.function
        def train_steps(iterator, num_steps, stop_flag):
            for _ in tf.range(num_steps - 1):
                strategy.run(model.train_step, args=(next(iterator),))
            logs = strategy.run(last_step, args=(next(iterator), stop_flag))
            return {k: strategy.reduce("MEAN", v, axis=None) for k, v in logs.items()}

        return train_steps

    def _non_finite_state(self):
        """Names of the model or optimizer variables holding a NaN or an infinity."""
        variables = list(self.model.weights) + list(self.optimizer.variables)
        return [v.path for v in variables if tf.as_dtype(v.dtype).is_floating
                and not bool(tf.reduce_all(tf.math.is_finite(v)))]

    def save_checkpoint(self, reason):
        """Saves the training state, unless it is not finite: resume trusts the newest
        checkpoint, so a NaN one would poison every rerun (`FloatingPointError` instead)."""
        broken = self._non_finite_state()
        if broken:
            raise FloatingPointError(
                f"Training diverged: {len(broken)} variable(s) are not finite at step "
                f"{int(self.step.numpy())} (e.g. {', '.join(broken[:3])}). No checkpoint was "
                f"written; the last finite one ({self.manager.latest_checkpoint}) is kept. "
                "Lower --learning_rate, then rerun to resume from it.")
        step = int(self.step.numpy())
        latest = self.manager.latest_checkpoint
        if latest and checkpoints.checkpoint_number(latest) == step:
            # Already saved (a periodic checkpoint on the step where the run stops): writing it
            # again gains nothing, and would append to the files on `ram://`.
            if self.is_chief:
                logging.info("Checkpoint %s (%s) was already written.", latest, reason)
            return
        try:
            path = self.manager.save(checkpoint_number=step)
        except tf.errors.OpError as error:  # e.g. a full disk: one line, not a traceback
            raise OSError(f"Cannot write a checkpoint to {self.manager.directory}: "
                          f"{error.message}") from error
        if self.is_chief:
            logging.info("Checkpoint %s (%s).", path, reason)

    def _writer(self, name):
        if self.is_chief:
            return tf.summary.create_file_writer(os.path.join(self.model_dir, "logs", name))
        return tf.summary.create_noop_writer()

    def _actions(self):
        c = self.config
        actions = [actions_lib.Progress(self.steps_per_epoch, c.schedule.epochs, enabled=self.is_chief),
                   actions_lib.TrainingSummaries(self._writer("train"), c.trainer.log_every),
                   actions_lib.PeriodicCheckpoint(c.trainer.checkpoint_every)]
        if c.evaluation.validation_split != "none":
            actions.append(actions_lib.Validation(
                self._distributed(c.evaluation.validation_split, training=False),
                self._writer("validation"), c.evaluation.validation_split))
        if c.evaluation.every_epochs:
            actions.append(actions_lib.ScheduledEvaluation(c.evaluation.every_epochs,
                                                           self._writer("evaluation")))
        if self.callbacks:
            actions.append(actions_lib.KerasCallbacks(self.callbacks, self.model))
        return actions

    def train(self):
        """Runs the remaining steps; returns the last training logs (floats)."""
        c = self.config
        step = self.current_step = int(self.step.numpy())
        if step >= self.total_steps:
            logging.info("Training already finished (%d steps).", step)
            return {}
        train_steps = self._make_train_function()
        iterator = iter(self._distributed("train", training=True))
        actions = self._actions()
        stop_at = (step + c.trainer.stop_after_steps) if c.trainer.stop_after_steps else None
        previous = self._install_signal_handler()
        logs, started, start_step = {}, time.time(), step
        try:
            for action in actions:
                action.before_training(self, step)
            while step < self.total_steps:
                epoch = step // self.steps_per_epoch
                epoch_end = (epoch + 1) * self.steps_per_epoch
                for metric in self.model.metrics:
                    metric.reset_state()
                while step < epoch_end:
                    bounds = [c.trainer.steps_per_loop, epoch_end - step]
                    bounds += [b for b in (a.steps_until(step) for a in actions) if b]
                    if stop_at:
                        bounds.append(stop_at - step)
                    n = self.last_chunk = min(bounds)
                    for action in actions:
                        action.before_steps(self, step, n)
                    logs = {k: float(v) for k, v in train_steps(
                        iterator, tf.constant(n, tf.int32),
                        tf.constant(float(self.interrupted))).items()}
                    any_worker_stops = logs.pop(STOP_KEY) > 0
                    if not np.isfinite(logs["loss"]):
                        for action in actions:  # TerminateOnNaN & co. see the loss first
                            if isinstance(action, actions_lib.KerasCallbacks):
                                action.after_steps(self, step + n, logs)
                        raise FloatingPointError(
                            f"Training diverged: the loss is {logs['loss']} at step {step + n}. "
                            "No checkpoint was written; the last finite one "
                            f"({self.manager.latest_checkpoint}) is kept. Lower --learning_rate, "
                            "then rerun to resume from it.")
                    step = self.current_step = step + n
                    self.step.assign(step)
                    logs["learning_rate"] = float(self.schedule(step - 1))
                    for action in actions:
                        action.after_steps(self, step, logs)
                    if self._callback_stops(step, "after step"):
                        return logs
                    if self.coordinated:  # all workers stop after the same chunk
                        self._stop_with_the_other_workers(any_worker_stops, step)
                    if (self.interrupted and (any_worker_stops or not self.coordinated)) or (
                            stop_at and step >= stop_at):
                        self.save_checkpoint("interrupted" if self.interrupted else "stopped")
                        self.interrupted = True
                        logging.warning("Stopped at step %d of %d; rerun the same command to "
                                        "resume.", step, self.total_steps)
                        return logs
                self.epoch.assign(epoch + 1)
                for action in actions:
                    action.after_epoch(self, epoch, logs)
                logging.info("Epoch %d training: %s", epoch + 1, actions_lib.format_logs(logs))
                spike = self.loss_spikes.record(epoch + 1, logs["loss"])
                if spike:
                    logging.warning(self.loss_spikes.message(spike))
                if self._callback_stops(step, "after epoch"):
                    return logs
        except KeyboardInterrupt:
            self.save_checkpoint("keyboard interrupt")
            raise
        finally:
            self._restore_signal_handler(previous)
            for action in actions:
                action.close()
        if self.coordinated and self.interrupted:  # too late to tell the others: all finished
            logging.warning("Signal %s arrived after the last step; finishing the run with the "
                            "other workers.", self.signal)
            self.interrupted, self.signal = False, None
        elapsed = time.time() - started
        images = (step - start_step) * c.schedule.batch_size
        logging.info("Trained %d steps in %.1f s (%.1f images/s).", step - start_step, elapsed,
                     images / max(elapsed, 1e-9))
        self.result["train_seconds"] = elapsed
        return logs

    def _stop_with_the_other_workers(self, any_worker_stops, step):
        """Coordinated preemption (several workers): a signal is acted on only once the stop
        flag of every worker has been averaged in the next chunk, so all workers save the same
        step and stop together; a worker that got no signal stops as if it got SIGTERM."""
        if any_worker_stops and not self.interrupted:
            logging.warning("Another worker was interrupted: saving a checkpoint at step %d and "
                            "stopping with it.", step)
            self.interrupted = True
            self.signal = signal.SIGTERM

    def _callback_stops(self, step, where):
        """Whether a Keras callback (EarlyStopping, TerminateOnNaN, ...) set
        `model.stop_training`: then the state is checkpointed and training ends here, and the
        run is finished as usual (final evaluation, model.keras), as `model.fit` would."""
        if not getattr(self.model, "stop_training", False):
            return False
        self.save_checkpoint("stopped by a callback")
        self.stopped_by_callback = step
        self.result["stopped_by_callback"] = step
        logging.warning("A callback stopped training %s %d of %d; finishing the run there.",
                        where, step, self.total_steps)
        return True

    def _install_signal_handler(self):
        def handler(signum, frame):  # noqa: ARG001
            logging.warning("Signal %d: saving a checkpoint at the next step and stopping.",
                            signum)
            self.interrupted = True
            self.signal = signum
        try:
            return signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread
            return None

    @staticmethod
    def _restore_signal_handler(previous):
        if previous is not None:
            try:
                signal.signal(signal.SIGTERM, previous)
            except ValueError:
                pass

    # ------------------------------------------------------------------------------------
    # Results.
    def run_evaluators(self, names=None):
        """`{name: result}` of the evaluators `names` (default `--evaluators`) on the model as
        it is now, on the run's distributed evaluation data (`evaluators.base`)."""
        c = self.config
        data = evaluators_base.EvaluationData(
            lambda split: (self._distributed(split, training=False), self.data_infos.get(split)),
            self.model_dir)
        return evaluators_base.run_evaluators(
            c.evaluation.evaluators if names is None else names, c, self.model, self.strategy,
            data, self.evaluators)

    def finish(self):
        """Final evaluation -> metrics.json and model.keras.

        The per-level figures (the `per_level` evaluator; with `--policy=sample`, the paper's
        protocol, also the deterministic `threshold` figures beside the sampled ones) are
        metrics.json's top level; each evaluator of `--evaluators` adds its result under its
        name (and its scalars to TensorBoard `logs/evaluation`).
        """
        c = self.config
        result = self.run_evaluators(["per_level"])["per_level"]
        names = [name for name in c.evaluation.evaluators if name != "per_level"]
        others = self.run_evaluators(names) if names else {}
        rest = {k: v for k, v in result.items() if k not in ("levels", "split", "policy",
                                                             "passes", "threshold")}
        metrics = {"levels": result["levels"], "model": c.model.name, "split": c.evaluation.split,
                   "policy": result["policy"], "passes": result["passes"],
                   "dataset": c.data.dataset, "variant": c.data.variant,
                   "resolution": c.model.resolution, "step": int(self.step.numpy()), **rest,
                   "loss_spikes": list(self.loss_spikes.spikes)}
        logging.info("Final evaluation (%s, %s, %d passes): %s", c.evaluation.split,
                     result["policy"], result["passes"],
                     actions_lib.format_logs(per_level.scalar_logs(result)))
        if "threshold" in result:
            metrics["threshold"] = result["threshold"]
            logging.info("Final evaluation with threshold attention: %s", actions_lib.format_logs(
                per_level.scalar_logs(result["threshold"])))
        listed = dict({"per_level": result} if "per_level" in c.evaluation.evaluators else {},
                      **others)
        metrics.update(listed)
        for name, entry in others.items():
            logging.info("Final %s: %s", name, entry.get("skipped") or actions_lib.format_logs(
                self.evaluators[name].scalars(entry)))
        if listed:
            actions_lib.write_evaluations(self._writer("evaluation"), int(self.step.numpy()),
                                          listed, self.evaluators)
        keras_path = os.path.join(self.write_dir, runs.run_directory.MODEL_FILE)
        files.save_keras(self.model, keras_path)
        if self.is_chief:
            files.write_json(os.path.join(self.model_dir, "metrics.json"), metrics)
            actions_lib.write_hparams(
                os.path.join(self.model_dir, "logs", actions_lib.HPARAMS_LOG), c, metrics,
                int(self.step.numpy()), self.replicas)
            logging.info("Wrote %s and %s.", os.path.join(self.model_dir, "metrics.json"),
                         keras_path)
        self.result["metrics"] = metrics
        if not self.is_chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        return metrics

    def weights_digest(self):
        """A short digest of every model weight (workers compare it: they must agree)."""
        digest = hashlib.sha256()
        for weight in self.model.weights:
            digest.update(np.ascontiguousarray(np.asarray(weight.numpy())).tobytes())
        return digest.hexdigest()[:16]

    def close(self):
        """Releases the run directory's lock (`run()` does; so does the end of the process)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def run(self):
        """setup -> train -> finish (unless stopped early). Returns a summary dict."""
        try:
            self.setup()
            logs = self.train()
            self.result.update(initial_step=self.initial_step, final_step=int(self.step.numpy()),
                               train_logs=logs, interrupted=self.interrupted, signal=self.signal,
                               total_steps=self.total_steps, model_dir=self.model_dir,
                               is_chief=self.is_chief)
            if not self.interrupted:
                self.finish()
        finally:
            self.close()
        self.result["weights_digest"] = self.weights_digest()
        logging.debug("Weights digest (task %s %s): %s", self.task_type, self.task_id,
                      self.result["weights_digest"])
        return self.result


def train(config, strategy=None, callbacks=()):
    """Runs one training session from a flag dict; returns `Trainer.run()`'s summary."""
    return Trainer(config, strategy, callbacks).run()
