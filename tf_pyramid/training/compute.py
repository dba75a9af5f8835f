"""The compute of each experiment: MACs per image, images, epochs, training FLOPs and an estimate of
accelerator-hours (docs/training.md, "Compute of each experiment").

MACs follow the model's own count (`module_costs`, docs/model.md): a traversal stopping after
level d costs `patches(<= d) * FE + applications(< d) * location + merges(< d) * (aggregation +
merging) + classification`. Before training, the number of patches is what the experiment's c_t
asks for: c_t attended cells are c_t patches besides the root, so the feature-extraction term
(almost all of the cost) follows from c_t alone. How those cells spread over the levels decides the
small location / aggregation / merging terms; it is taken as every cell of every applied grid
equally likely (the density `learning_rule.uniform_cell_probability` gives, the one R_r aims at
with the default c_r). A multi-level experiment names its cells per depth (c_t^z for the traversal
truncated after z + 1 levels), which gives the patches of every level directly.

Training compute per image = forward MACs x M (the Monte Carlo copies, when the model attends) x 3
(forward + backward; the backward pass costs about twice the forward: gradients with respect to
activations and to weights), x 2 FLOPs per MAC. The per-epoch validation and the final evaluation
are left out (one forward pass of 50,000 images against three of 1,281,152: under 1.5 %), and so are
the shorter traversals' extra aggregation / merging under the multi-level rule (the feature
extraction is shared by every depth). Accelerator-hours divide by a stated throughput: a peak times
an assumed utilisation, an estimate, not a measurement.
"""
import dataclasses
import functools

from tf_pyramid.configs import experiments

# Training split sizes (paper Sec. 5.1 and 5.2).
TRAIN_IMAGES = {"imagenet2012": 1_281_167, "mnist": 55_000}
FLOPS_PER_MAC = 2
FORWARD_AND_BACKWARD = 3  # training pass = forward + backward ~ 3 forward passes
GRID_CELLS = 9
STUDY_FAMILIES = ("imagenet", "multilevel")


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Sustained training throughput: a peak (dense, no sparsity) times an assumed utilisation."""
    accelerator: str = "A100"
    peak_tflops: float = 312.0  # NVIDIA A100 datasheet: bf16 tensor-core peak, dense
    utilisation: float = 0.3    # assumed model-FLOP utilisation (gathers, small patch convs)

    @property
    def flops_per_second(self):
        return self.peak_tflops * 1e12 * self.utilisation

    def describe(self):
        return (f"{self.accelerator}: {self.peak_tflops:g} TFLOP/s peak (bf16, dense) x "
                f"{self.utilisation:.0%} assumed utilisation = "
                f"{self.flops_per_second / 1e12:.1f} TFLOP/s sustained")


@functools.lru_cache(maxsize=None)
def module_costs(model, levels):
    """Per-application MACs of each module (pyramid) or per image (baseline) of a built model."""
    from tf_pyramid.modeling import build_model  # noqa: PLC0415  (imports TensorFlow)

    return dict(build_model(model, levels=levels).module_costs())


def uniform_patches(c_t, levels):
    """Expected patches per level (root first) when every cell is attended with the probability
    that gives `c_t` attended cells in all."""
    from tf_pyramid.modeling.learning_rule import uniform_cell_probability  # noqa: PLC0415

    q = uniform_cell_probability(c_t, levels, GRID_CELLS)
    return [(GRID_CELLS * q) ** level for level in range(levels)]


def multilevel_patches(c_t_per_depth):
    """Expected patches per level from the multi-level rule's targets: c_t^z cells up to depth
    z + 1, so level z + 1 holds c_t^z - c_t^(z-1)."""
    cumulative = [0.0, *(float(c) for c in c_t_per_depth)]
    return [1.0] + [b - a for a, b in zip(cumulative, cumulative[1:])]


def traversal_macs(costs, patches, depth):
    """MACs of a traversal stopping after level `depth`, with `patches[l]` (expected) patches at
    level l + 1. A patch above `depth` applies the location module; it merges when at least one of
    its 9 cells is attended (cells independent with the level's density)."""
    if "location" not in costs:  # a baseline: one cost per image
        return float(sum(costs.values()))
    macs = sum(patches[:depth]) * costs["feature_extraction"] + costs["classification"]
    for level in range(depth - 1):
        parents = patches[level]
        density = patches[level + 1] / (GRID_CELLS * parents) if parents else 0.0
        merges = parents * (1.0 - (1.0 - min(density, 1.0)) ** GRID_CELLS)
        macs += parents * costs["location"] + merges * (costs["aggregation"] + costs["merging"])
    return float(macs)


def stage_config(name):
    """The typed config of experiment `name` as its flagfile states it."""
    from tf_pyramid.training import chain  # noqa: PLC0415

    return chain.parse_argv(experiments.stage_argv("compute", name, []))


def chain_names(name):
    """The experiments of `name`'s chain, earliest first, `name` last."""
    names = [name]
    while True:
        previous = stage_config(names[0]).previous_stage
        if not previous:
            return names
        names.insert(0, previous)


def experiment_compute(name, throughput=Throughput()):
    """The compute of one experiment (one stage; `chain_*` adds its earlier stages): a dict."""
    from tf_pyramid.modeling import is_pyramid, levels_for_resolution  # noqa: PLC0415

    config = stage_config(name)
    model, resolution = config.model.name, config.model.resolution
    levels = config.model.levels or levels_for_resolution(model, resolution)
    costs = module_costs(model, levels)
    c_t = [float(c) for c in config.learning_rule.target_locations]
    attends = is_pyramid(model) and levels > 1
    per_level = []
    if attends:
        patches = multilevel_patches(c_t) if len(c_t) > 1 else uniform_patches(c_t[0], levels)
        for depth in range(1, levels + 1):
            per_level.append({
                "level": depth,
                "expected": traversal_macs(costs, patches, depth),
                "min": traversal_macs(costs, [1.0] + [0.0] * (levels - 1), depth),
                "max": traversal_macs(costs, [float(GRID_CELLS ** lv) for lv in range(levels)],
                                      depth)})
    else:
        macs = traversal_macs(costs, [1.0], 1)
        per_level.append({"level": 1, "expected": macs, "min": macs, "max": macs})
    copies = config.learning_rule.mc_samples if attends else 1
    train_images = TRAIN_IMAGES[config.data.dataset]
    batch = config.schedule.batch_size
    images_per_epoch = (train_images // batch) * batch  # the trainer's epoch: whole batches
    forward = per_level[-1]["expected"]
    training_macs_per_image = forward * copies * FORWARD_AND_BACKWARD
    flops = training_macs_per_image * images_per_epoch * config.schedule.epochs * FLOPS_PER_MAC
    return {
        "experiment": name, "model": model, "resolution": resolution, "levels": levels,
        "c_t": c_t or None, "mc_samples": copies, "forward_macs": forward,
        "per_level_macs": per_level, "train_images": train_images,
        "images_per_epoch": images_per_epoch, "epochs": config.schedule.epochs,
        "training_macs_per_image": training_macs_per_image, "training_flops": flops,
        "accelerator_hours": flops / throughput.flops_per_second / 3600.0,
        "previous_stage": config.previous_stage}


def study_compute(names, throughput=Throughput()):
    """`experiment_compute` of each name, with its chain's stages, epochs, FLOPs and hours
    (every stage it needs, itself included), and the total of the distinct runs."""
    entries = {}
    for name in names:
        for stage in chain_names(name):
            if stage not in entries:
                entries[stage] = experiment_compute(stage, throughput)
    rows = []
    for name in names:
        stages = [entries[stage] for stage in chain_names(name)]
        rows.append(dict(entries[name], chain=[s["experiment"] for s in stages],
                         chain_epochs=sum(s["epochs"] for s in stages),
                         chain_flops=sum(s["training_flops"] for s in stages),
                         chain_accelerator_hours=sum(s["accelerator_hours"] for s in stages)))
    distinct = list(entries.values())
    total = {"runs": len(distinct), "epochs": sum(e["epochs"] for e in distinct),
             "training_flops": sum(e["training_flops"] for e in distinct),
             "accelerator_hours": sum(e["accelerator_hours"] for e in distinct)}
    return {"throughput": dataclasses.asdict(throughput), "experiments": rows, "total": total}


def family_names(families):
    return [n for n in experiments.experiment_names() if n.split("/")[0] in families]


def _mmacs(value):
    """Millions of MACs: three significant digits below 10 M, else whole tenths or units."""
    if value < 1e7:
        return f"{value / 1e6:.3g}"
    return f"{value / 1e6:,.1f}" if value < 1e9 else f"{value / 1e6:,.0f}"


def _significant(value):
    """Two significant digits for small numbers, else thousands separators and one decimal."""
    return f"{value:.2g}" if value < 1 else f"{value:,.1f}"


def markdown(study, throughput=Throughput()):
    """One table (a row per experiment) and its total: what docs/training.md shows."""
    hours = f"{throughput.accelerator}-h"
    lines = [
        "| experiment | model | px | L | c_t | M | forward MMACs / image: expected (per level: "
        "expected [min-max]) | training GMACs / image | epochs (chain) | training FLOP | "
        f"{hours} (chain) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in study["experiments"]:
        attends = row["levels"] > 1 and row["c_t"]
        levels = "; ".join(
            f"L{p['level']} {_mmacs(p['expected'])} [{_mmacs(p['min'])}-{_mmacs(p['max'])}]"
            for p in row["per_level_macs"]) if attends else ""
        c_t = ", ".join(f"{c:g}" for c in row["c_t"]) if attends else ""
        chained = len(row["chain"]) > 1
        lines.append(
            f"| {row['experiment']} | {row['model']} | {row['resolution']} | {row['levels']} | "
            f"{c_t} | {row['mc_samples']} | {_mmacs(row['forward_macs'])}"
            f"{' (' + levels + ')' if levels else ''} | "
            f"{row['training_macs_per_image'] / 1e9:,.3g} | {row['epochs']}"
            f"{' (%d)' % row['chain_epochs'] if chained else ''} | {row['training_flops']:.2e} | "
            f"{_significant(row['accelerator_hours'])}"
            f"{' (' + _significant(row['chain_accelerator_hours']) + ')' if chained else ''} |")
    total = study["total"]
    lines += ["", f"Total of these {total['runs']} distinct runs (a stage that several chains "
              f"share counted once): {total['epochs']:,} epochs, {total['training_flops']:.2e} "
              f"FLOP, {_significant(total['accelerator_hours'])} {hours}."]
    return "\n".join(lines) + "\n"


TABLES = (("ImageNet (`flags/imagenet`, `flags/multilevel`: the study of Sec. 5.2)",
           ("imagenet", "multilevel")),
          ("MNIST (`flags/mnist`, one variant)", ("mnist",)))


def document(throughput=Throughput()):
    """Every experiment's compute, one table per dataset, with the throughput assumed: the
    block of docs/training.md between its `compute table` markers."""
    parts = [f"Accelerator-hours at {throughput.describe()}: an estimate, not a measurement."]
    for title, families in TABLES:
        parts += ["", f"**{title}**", "",
                  markdown(study_compute(family_names(families), throughput), throughput)]
    return "\n".join(parts).rstrip("\n") + "\n"
