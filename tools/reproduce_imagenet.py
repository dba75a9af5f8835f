r"""The paper's ImageNet study (Sec. 5.2, A.6.2, Figure 6) with one command, through the experiments.

  python tools/reproduce_imagenet.py --data_dir=DIR [--experiments=imagenet/m2_64_ct4.5,...]
      [--runs_dir=DIR] [--epochs=N] [--extra_flags=--dataset=tfrecord,--batch_size=256] [--dry_run]

Plans every experiment under flags/imagenet and flags/multilevel (or those of --experiments, with
the earlier stages of their chains) in chain order: by resolution (32, 64, 128, 256 px), so a
run's previous stage is always trained before it. Each run is `python -m tf_pyramid.train
--experiment=NAME --model_dir=RUNS_DIR/NAME --stages_dir=RUNS_DIR [--data_dir=..] [--epochs=N]
[EXTRA_FLAGS]` in a fresh process, its console in RUNS_DIR/NAME/train.log; with
--stages_dir=RUNS_DIR the trainer's chain finds the study's own earlier runs there, finished, and
starts from them. A finished run (metrics.json and model.keras) is skipped; an interrupted one is
started again and the trainer resumes it from its latest checkpoint. Every line of the plan and of
the progress gives the run's compute estimate (tf_pyramid.training.compute: MACs per image, FLOPs,
accelerator-hours at --peak_tflops x --utilisation, an estimate).

The resolutions stay the flagfiles': a resolution fixes a pyramid model's number of levels and the
length of its c_t list, so a smaller one would be another experiment (the trainer's chains refuse
--resolution for the same reason). Tests cut the cost with the 32 and 64 px sessions, --epochs,
and trainer flags through --extra_flags (--steps_per_epoch, --batch_size, --noexport).

Writes to RUNS_DIR: results.json (settings, one entry per finished run, the compute estimates and
the Sec. 5.2 claims checked: tf_pyramid.analysis.imagenet_claims), results.md and figure6.png
(accuracy against MACs per image; M2 / BL2 above, M1 / BL1 below; one colour per resolution,
filled markers for M_i, hollow for BL_i, multi-level models as a line through their levels, n_c
beside each pyramid point).
"""
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

from tf_pyramid.configs import experiments

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = ("imagenet", "multilevel")
RESOLUTIONS = (32, 64, 128, 256)
COLOURS = {32: "C0", 64: "C1", 128: "C2", 256: "C3"}

FLAGS = flags.FLAGS
flags.DEFINE_list("experiments", [], "Experiments to run (default: every one under "
                  "flags/imagenet and flags/multilevel); their chains' earlier stages are added.")
flags.DEFINE_string("runs_dir", None, "Where the runs and results go (default: "
                    "runs/reproduce/imagenet).")
flags.DEFINE_string("data_dir", None, "The trainer's --data_dir for every run.")
flags.DEFINE_integer("epochs", None, "Epochs of every run (default: the flagfiles' 200).",
                     lower_bound=1)
flags.DEFINE_list("extra_flags", [], "More trainer flags for every run, e.g. "
                  "--extra_flags=--dataset=tfrecord,--steps_per_epoch=2.")
flags.DEFINE_string("accelerator", "A100", "Accelerator named in the compute estimate.")
flags.DEFINE_float("peak_tflops", 312.0, "Its dense peak, TFLOP/s (A100 bf16: 312).")
flags.DEFINE_float("utilisation", 0.3, "Assumed fraction of the peak sustained.")
flags.DEFINE_bool("dry_run", False, "Print the plan (one command per run, with its compute "
                  "estimate) and stop.")


# ------------------------------------------------------------------------------------- the plan
def _describe(name):
    """Model, pair, resolution and c_t of experiment `name`, from its flagfile."""
    from tf_pyramid.training import compute  # noqa: PLC0415

    config = compute.stage_config(name)
    kind, pair = config.model.name.split("_")[1][:-1], int(config.model.name[-1])
    c_t = [float(c) for c in config.learning_rule.target_locations]
    multilevel = name.split("/")[0] == "multilevel"
    return {"experiment": name, "model": f"{kind.upper()}{pair}", "pair": pair,
            "resolution": config.model.resolution, "multilevel": multilevel,
            "c_t": (c_t if multilevel else c_t[0]) if c_t else None,
            "previous_stage": config.previous_stage}


def plan(names, throughput):
    """The runs of `names` and of their chains' earlier stages, in chain order, each with its
    compute estimate."""
    from tf_pyramid.training import compute  # noqa: PLC0415

    wanted = []
    for name in names:
        for stage in compute.chain_names(name):
            if stage not in wanted:
                wanted.append(stage)
    runs = [_describe(name) for name in wanted]
    runs.sort(key=lambda r: (r["resolution"], r["multilevel"], r["pair"], r["model"],
                             str(r["c_t"])))
    for run in runs:
        estimate = compute.experiment_compute(run["experiment"], throughput)
        run["compute"] = {key: estimate[key] for key in (
            "forward_macs", "per_level_macs", "mc_samples", "images_per_epoch", "epochs",
            "training_flops", "accelerator_hours")}
    return runs


def run_dir(runs_dir, run):
    """<runs_dir>/<experiment name>: where the next stage's chain (with --stages_dir=runs_dir)
    looks for it."""
    return os.path.join(runs_dir, *run["experiment"].split("/"))


def command(run, runs_dir, data_dir, epochs, extra_flags):
    args = [sys.executable, "-m", "tf_pyramid.train", f"--experiment={run['experiment']}",
            f"--model_dir={run_dir(runs_dir, run)}", f"--stages_dir={runs_dir}"]
    if data_dir:
        args.append(f"--data_dir={data_dir}")
    if epochs:
        args.append(f"--epochs={epochs}")
    return args + list(extra_flags)


def _finished(directory):
    return all(os.path.exists(os.path.join(directory, name))
               for name in ("metrics.json", "model.keras"))


def _status(directory):
    if _finished(directory):
        return "finished"
    if os.path.isdir(os.path.join(directory, "checkpoints")):
        return "resumes"
    return "to train"


def _duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _estimate(run, epochs, accelerator):
    """The run's compute line, scaled to --epochs when given."""
    c = run["compute"]
    scale = (epochs / c["epochs"]) if epochs else 1.0
    return (f"{c['forward_macs'] / 1e6:,.1f} MMACs/image x {c['mc_samples']} x 3, "
            f"{(epochs or c['epochs'])} epochs: {c['training_flops'] * scale:.2e} FLOP, "
            f"~{c['accelerator_hours'] * scale:,.1f} {accelerator}-h")


def train_all(runs, runs_dir, data_dir, epochs, extra_flags):
    """Trains every unfinished run in order, one process each; stops at the first failure."""
    start = time.time()
    for index, run in enumerate(runs):
        directory = run_dir(runs_dir, run)
        prefix = f"[{index + 1}/{len(runs)}] {run['experiment']}:"
        if _finished(directory):
            print(f"{prefix} finished before, skipped", flush=True)
            continue
        os.makedirs(directory, exist_ok=True)
        resumed = _status(directory) == "resumes"
        began = time.time()
        log_path = os.path.join(directory, "train.log")
        with open(log_path, "a") as log:
            process = subprocess.run(
                command(run, runs_dir, data_dir, epochs, extra_flags), cwd=REPO, stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", "")))
        if process.returncode != 0 or not _finished(directory):
            with open(log_path) as log:
                tail = log.read()[-3000:]
            why = (f"exit {process.returncode}" if process.returncode else
                   "stopped before the end (no metrics.json); run the same command again to "
                   "resume it")
            print(f"{prefix} FAILED ({why}); log {log_path}:\n{tail}", flush=True)
            raise SystemExit(1)
        print(f"{prefix} {'resumed and ' if resumed else ''}trained in "
              f"{_duration(time.time() - began)}; elapsed {_duration(time.time() - start)}",
              flush=True)


# ------------------------------------------------------------------------------------- results
def collect(runs, runs_dir):
    """One row per finished run: its plan entry, per-level metrics and last-level figures."""
    rows = []
    for run in runs:
        directory = run_dir(runs_dir, run)
        if not _finished(directory):
            continue
        with open(os.path.join(directory, "metrics.json")) as f:
            metrics = json.load(f)
        levels = [{"level": e["level"], "accuracy": e["accuracy"], "mean_macs": e["mean_macs"],
                   "mean_locations": e["mean_locations"]} for e in metrics["levels"]]
        std = metrics.get("accuracy_std")
        rows.append(dict(run, levels=levels, accuracy=levels[-1]["accuracy"],
                         macs=levels[-1]["mean_macs"], n_c=levels[-1]["mean_locations"],
                         accuracy_std=std[-1] if std else None,
                         num_examples=metrics.get("num_examples"), split=metrics.get("split"),
                         passes=metrics.get("passes")))
    return rows


def markdown(rows, header, accelerator):
    lines = [header, "",
             "| experiment | model | px | c_t | accuracy per level | n_c | MACs / image "
             "(measured) | MACs / image (expected) | estimate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        c_t = row["c_t"]
        c_t = ", ".join(f"{c:g}" for c in c_t) if isinstance(c_t, list) else (
            f"{c_t:g}" if c_t else "")
        per_level = "; ".join(f"L{e['level']} {e['accuracy']:.4f}" for e in row["levels"])
        lines.append(
            f"| {row['experiment']} | {row['model']}{'-ml' if row['multilevel'] else ''} | "
            f"{row['resolution']} | {c_t} | {per_level} | {row['n_c']:.2f} | "
            f"{row['macs'] / 1e6:,.1f} M | {row['compute']['forward_macs'] / 1e6:,.1f} M | "
            f"{row['compute']['accelerator_hours']:,.1f} {accelerator}-h |")
    return "\n".join(lines) + "\n"


def figure(rows, path, title):
    """Figure-6-style PNG: accuracy (%) against MACs per image; M2 / BL2 above, M1 / BL1 below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(9, 9), dpi=100)
    FigureCanvasAgg(fig)
    for panel, pair in enumerate((2, 1)):
        ax = fig.add_subplot(2, 1, panel + 1)
        for row in (r for r in rows if r["pair"] == pair):
            colour = COLOURS.get(row["resolution"], "k")
            pyramid = row["model"].startswith("M")
            if row["multilevel"]:
                xs = [e["mean_macs"] / 1e6 for e in row["levels"]]
                ys = [100 * e["accuracy"] for e in row["levels"]]
                ax.plot(xs, ys, "--", color=colour, marker="D", markerfacecolor=colour)
                for e, x, y in zip(row["levels"], xs, ys):
                    ax.annotate(f"L{e['level']}", (x, y), textcoords="offset points",
                                xytext=(4, -10), fontsize=7, color=colour)
                continue
            ax.plot([row["macs"] / 1e6], [100 * row["accuracy"]], linestyle="none",
                    marker="o" if pyramid else "s", markersize=8, markeredgecolor=colour,
                    markerfacecolor=colour if pyramid else "none", markeredgewidth=1.8)
            if pyramid and len(row["levels"]) > 1:
                ax.annotate(f"{row['n_c']:.1f}", (row["macs"] / 1e6, 100 * row["accuracy"]),
                            textcoords="offset points", xytext=(6, 4), fontsize=8, color=colour)
        ax.set_xlabel("MMACs per image")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"M{pair} and BL{pair}", fontsize=10)
        handles = [Line2D([], [], color=COLOURS[r], marker="o", linestyle="none",
                          label=f"{r} px") for r in RESOLUTIONS
                   if any(row["resolution"] == r for row in rows)]
        handles += [Line2D([], [], color="k", marker="o", linestyle="none", label=f"M{pair}"),
                    Line2D([], [], color="k", marker="s", markerfacecolor="none",
                           linestyle="none", label=f"BL{pair}"),
                    Line2D([], [], color="k", marker="D", linestyle="--",
                           label=f"M{pair} multi-level (per level)")]
        ax.legend(handles=handles, fontsize=8, loc="best")
    fig.suptitle(title + " (numbers: attended cells n_c)", fontsize=10)
    fig.savefig(path)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tf_pyramid.analysis import imagenet_claims  # noqa: PLC0415
    from tf_pyramid.training import compute  # noqa: PLC0415

    if FLAGS.peak_tflops <= 0 or not 0 < FLAGS.utilisation <= 1:
        raise app.UsageError("--peak_tflops must be above 0 and --utilisation in (0, 1].")
    throughput = compute.Throughput(FLAGS.accelerator, FLAGS.peak_tflops, FLAGS.utilisation)
    study = compute.family_names(FAMILIES)
    names = FLAGS.experiments or study
    unknown = [n for n in names if n not in study]
    if unknown:
        raise app.UsageError(f"Not experiments of the ImageNet study: {', '.join(unknown)}; "
                             f"they are the names under flags/imagenet and flags/multilevel, "
                             f"e.g. {study[0]} (python -m tf_pyramid.train --list_experiments).")
    runs_dir = os.path.abspath(FLAGS.runs_dir or os.path.join(REPO, "runs", "reproduce",
                                                              "imagenet"))
    try:
        runs = plan(names, throughput)
    except experiments.ExperimentError as error:
        raise app.UsageError(str(error))
    accelerator = throughput.accelerator
    if FLAGS.dry_run:
        left = 0.0
        for index, run in enumerate(runs):
            state = _status(run_dir(runs_dir, run))
            if state != "finished":
                scale = FLAGS.epochs / run["compute"]["epochs"] if FLAGS.epochs else 1.0
                left += run["compute"]["accelerator_hours"] * scale
            print(f"[{index + 1}/{len(runs)}] ({state}) " + " ".join(
                command(run, runs_dir, FLAGS.data_dir, FLAGS.epochs, FLAGS.extra_flags)[1:]))
            print(f"    {_estimate(run, FLAGS.epochs, accelerator)}")
        print(f"{len(runs)} runs; still to train: ~{left:,.1f} {accelerator}-h at "
              f"{throughput.describe()} (an estimate, not a measurement).")
        return
    os.makedirs(runs_dir, exist_ok=True)
    print(f"{len(runs)} runs in {runs_dir} (epochs {FLAGS.epochs or 'of the flagfiles'})",
          flush=True)
    train_all(runs, runs_dir, FLAGS.data_dir, FLAGS.epochs, FLAGS.extra_flags)
    rows = collect(runs, runs_dir)
    checked = imagenet_claims.claims(rows)
    settings = {"experiments": names, "data_dir": FLAGS.data_dir, "epochs": FLAGS.epochs,
                "extra_flags": FLAGS.extra_flags, "throughput": throughput.describe()}
    with open(os.path.join(runs_dir, "results.json"), "w") as f:
        json.dump({"settings": settings, "runs": rows, "claims": checked}, f, indent=2)
    title = f"ImageNet study, epochs {FLAGS.epochs or 'of the flagfiles'}"
    evaluation = (f"; accuracy on the {rows[0]['split']} split ({rows[0]['num_examples']} "
                  "images)" if rows else "")
    table = markdown(rows, title + evaluation + ".", accelerator)
    with open(os.path.join(runs_dir, "results.md"), "w") as f:
        f.write(table + "\n" + imagenet_claims.claims_markdown(checked))
    figure(rows, os.path.join(runs_dir, "figure6.png"), title)
    print(table + "\n" + imagenet_claims.claims_markdown(checked))
    print(f"Wrote results.json, results.md and figure6.png to {runs_dir}")


if __name__ == "__main__":
    app.run(main)
