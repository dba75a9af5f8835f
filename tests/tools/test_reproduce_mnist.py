"""tools/reproduce_mnist.py (the paper's MNIST study through the flagfiles) and
tools/attention_quality.py, on a tiny grid: one pair, 28 px then 56 px gradual, 2 steps each;
the claims check (tf_pyramid.analysis.mnist_claims) on hand-made results."""
import json

import pytest

from tests.helpers import png_size, run_python
from tf_pyramid.analysis import mnist_claims
from tf_pyramid.analysis import mnist_study

TOOL = "tools/reproduce_mnist.py"


def _row(model, resolution, accuracy, c_t=None, gradual=False, n_c=0.0, variant="plain",
         std=None, seeds=1, n_c_threshold=None):
    """A hand-made summary row (one configuration, its mean and seed std)."""
    levels = {14: 1, 28: 2, 56: 3}[resolution] if model.startswith("M") else 1
    return {"model": model, "pair": int(model[-1]), "resolution": resolution, "c_t": c_t,
            "gradual": gradual, "accuracy": accuracy, "accuracy_std": std, "seeds": seeds,
            "n_c": n_c, "n_c_threshold": n_c_threshold, "levels": levels, "variant": variant}


def _claim(checked, start, variant="plain"):
    return next(c for c in checked if c["claim"].startswith(start) and c["variant"] == variant)


def test_margins_are_judged_against_the_seed_noise():
    """A difference decides only beyond 2 standard errors of the seed noise; one seed decides
    nothing (no bare sign test)."""
    def bl1_56_below_14(acc_56, std, seeds):
        rows = [_row("BL1", 14, 0.90, std=std, seeds=seeds),
                _row("BL1", 56, acc_56, std=std, seeds=seeds)]
        return _claim(mnist_claims.claims(rows), "BL1 at 56 px below BL1 at 14")

    # 5 seeds, std 0.01: se of the difference = 0.01 * sqrt(2 / 5) = 0.0063.
    assert bl1_56_below_14(0.85, 0.01, 5)["verdict"] == "holds"       # 0.05 > 2 se
    assert bl1_56_below_14(0.895, 0.01, 5)["verdict"] == "within noise"  # 0.005 < 2 se
    assert bl1_56_below_14(0.95, 0.01, 5)["verdict"] == "fails"       # the other side
    one = bl1_56_below_14(0.85, None, 1)
    assert one["verdict"] == "one seed" and "(1 seed)" in one["checks"][0]["figures"]
    check = bl1_56_below_14(0.895, 0.01, 5)["checks"][0]
    assert "0.900 ± 0.010 (5 seeds)" in check["figures"] and "se 0.006" in check["figures"]


def test_the_better_of_scratch_and_gradual_stands_for_a_56_px_configuration():
    rows = [_row("BL2", 28, 0.95, std=0.002, seeds=3),
            _row("BL2", 56, 0.90, std=0.002, seeds=3),                # scratch: far below
            _row("BL2", 56, 0.94, gradual=True, std=0.002, seeds=3)]  # gradual: the better
    claim = _claim(mnist_claims.claims(rows), "BL2 at 56 px below BL2 at 28")
    assert claim["verdict"] == "holds" and "BL2-56 gradual 0.940" in claim["checks"][0]["figures"]


def test_claims_per_variant_as_the_paper_states_them():
    noise = dict(std=0.003, seeds=4)
    noisy = [_row(m, 28, a, c_t=2.0 if m[0] == "M" else None, variant="noisy", **noise)
             for m, a in (("M3", 0.97), ("M2", 0.96), ("M1", 0.95), ("BL3", 0.95))]
    noisy += [_row("M3", 56, 0.96, c_t=6.0, variant="noisy", n_c=6.1, **noise),
              _row("M3", 56, 0.975, c_t=12.0, variant="noisy", n_c=12.4, n_c_threshold=9.0,
                   **noise),
              _row("M2", 56, 0.955, c_t=6.0, variant="noisy", n_c=6.0, **noise),
              _row("M1", 56, 0.951, c_t=6.0, variant="noisy", n_c=6.3, **noise),
              _row("BL3", 56, 0.97, variant="noisy", **noise)]
    checked = mnist_claims.claims(noisy)
    dip = _claim(checked, "M_i at 56 px with c_t 6 below", "noisy")
    # M3 and M2 dip beyond the noise; M1 (0.951 vs 0.95) is inside it: the claim is not decided.
    assert [c["verdict"] for c in dip["checks"]] == ["holds", "holds", "within noise"]
    assert dip["verdict"] == "within noise"
    assert _claim(checked, "M3 at 56 px with c_t 12 at least", "noisy")["verdict"] == "holds"
    assert _claim(checked, "BL3 at 56 px above BL3 at 28", "noisy")["verdict"] == "holds"
    # Rising with resolution on noisy: 56 px with the larger c_t only (the dip is its own claim).
    assert len(_claim(checked, "M3 accuracy rising with resolution", "noisy")["checks"]) == 1
    assert not [c for c in checked if c["claim"].startswith("BL2 at 56 px below")]  # plain only
    n_c = _claim(checked, "n_c close", "noisy")
    text = " ".join(c["figures"] for c in n_c["checks"])
    assert "M3-56 c_t 12: n_c 12.40 sampled, 9.00 threshold; paper 12.1" in text

    textured = [_row("BL2", 28, 0.90, variant="textured", **noise),
                _row("BL2", 56, 0.93, variant="textured", **noise),
                _row("M1", 28, 0.90, c_t=2.0, variant="textured", **noise),
                _row("BL1", 28, 0.60, variant="textured", **noise),
                _row("M1", 28, 0.98, c_t=2.0, **noise), _row("BL1", 28, 0.90, **noise)]
    checked = mnist_claims.claims(textured)
    assert _claim(checked, "BL2 at 56 px above BL2 at 28", "textured")["verdict"] == "holds"
    gap = _claim(checked, "M1 - BL1 gap larger on textured", "textured")
    assert gap["verdict"] == "holds" and "gap +0.300" in gap["checks"][0]["figures"]


def test_claims_not_checked_before_with_absolute_figures():
    rows = [_row("M3", 14, 0.950, std=0.002, seeds=3), _row("BL3", 14, 0.952, std=0.002, seeds=3),
            _row("M3", 28, 0.985, c_t=2.0, n_c=2.3, std=0.002, seeds=3)]
    checked = mnist_claims.claims(rows)
    assert _claim(checked, "M3 at 14 px about BL3 at 14")["verdict"] == "holds"
    above_99 = _claim(checked, "M3 at 28 px above 99%")
    assert above_99["verdict"] == "fails"
    assert "M3-28 c_t 2 0.985 ± 0.002 (3 seeds); paper: over 99%" in above_99["checks"][0][
        "figures"]
    assert _claim(checked, "BL2 at 56 px below")["verdict"] == "not checked"
    text = mnist_claims.claims_markdown(checked)
    assert "not checked" in text and "2 standard errors" in text


def test_summary_over_seeds_and_steps_to_the_target(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "I1204 trainer.py:1] Epoch 1 validation (validation): level_1_accuracy 0.5, "
        "level_2_accuracy 0.7, level_2_mean_locations 2.1\n"
        "I1204 trainer.py:1] Epoch 2 validation (validation): level_1_accuracy 0.6, "
        "level_2_accuracy 0.85\n"
        "I1204 trainer.py:1] Epoch 3 validation (validation): level_2_accuracy 0.93\n")
    curve = mnist_study.validation_curve(str(tmp_path))
    assert curve == [0.7, 0.85, 0.93]
    assert mnist_study.steps_to(curve, 31, 0.9) == 93
    assert mnist_study.steps_to(curve, 31, 0.95) is None
    runs = [{"name": "m1_28", "experiment": "mnist/m1_28", "model": "M1", "pair": 1,
             "resolution": 28, "c_t": 2.0, "gradual": False, "levels": 2, "split": "validation",
             "passes": 20, "variant": "plain", "seed": seed, "accuracy": accuracy,
             "accuracy_std": 0.001, "n_c": 2.0 + seed / 10, "n_c_threshold": None,
             "macs": 1e6, "steps_to_target": steps, "loss_spikes": [], "attention": None}
            for seed, accuracy, steps in ((1, 0.90, 62), (2, 0.92, None), (3, 0.94, 93))]
    (summary,) = mnist_study.summarize(runs)
    assert summary["seeds"] == 3 and summary["accuracy"] == pytest.approx(0.92)
    assert summary["accuracy_std"] == pytest.approx(0.02)   # sample std over the seeds
    assert summary["steps_to_target"] == pytest.approx(77.5) and summary["never_reached"] == 1
    table = mnist_study.markdown([summary], "t")
    assert "| 0.9200 ± 0.0200 (seeds) |" in table and "(1 never)" in table


def test_plan_is_the_papers_chain_order(tmp_path):
    out = run_python([TOOL, "--dry_run", f"--runs_dir={tmp_path}", "--variant=textured",
                      "--epochs=3"]).stdout.splitlines()
    names = [line.split("--model_dir=")[1].split()[0].rsplit("/", 1)[1] for line in out]
    assert len(names) == 30 and out[0].startswith("[1/30] ")
    assert names[:6] == ["bl1_14", "m1_14", "bl2_14", "m2_14", "bl3_14", "m3_14"]
    assert names[12:18] == ["bl1_56", "bl1_56_gradual", "m1_56_ct6", "m1_56_ct6_gradual",
                            "m1_56_ct12", "m1_56_ct12_gradual"]
    assert all(names.index(n.split("_56")[0] + "_28") < names.index(n) for n in names
               if n.endswith("_gradual"))  # every gradual run after the run it starts from
    gradual = next(line for line in out if "m2_56_ct12_gradual" in line)
    # The trainer's chain: the 28 px stage is <stages_dir>/mnist/m2_28, this study's own run.
    assert f"--stages_dir={tmp_path}/seed_1 " in gradual and \
        "--experiment=mnist/m2_56_ct12_gradual" in gradual and "--variant=textured" in gradual \
        and "--epochs=3" in gradual and "--seed=1" in gradual
    assert "--mnist_input=standardized" in gradual  # the default input
    assert f"--model_dir={tmp_path}/seed_1/mnist/m2_28 " in out[names.index("m2_28")]
    seeded = run_python([TOOL, "--dry_run", f"--runs_dir={tmp_path}", "--seeds=2",
                         "--first_seed=5", "--pairs=1", "--resolutions=28",
                         "--mnist_input=unit"]).stdout.splitlines()
    assert len(seeded) == 4 and "--seed=6" in seeded[2] and "--mnist_input=unit" in seeded[0]
    assert f"--model_dir={tmp_path}/seed_6/mnist/bl1_28 " in seeded[2]
    only = run_python([TOOL, "--dry_run", f"--runs_dir={tmp_path}", "--pairs=1,3",
                       "--only=bl3_28,m1_56_ct6", "--c_t=6"]).stdout.splitlines()
    assert [line.split("--experiment=")[1].split()[0] for line in only] == [
        "mnist/bl3_28", "mnist/m1_56_ct6"]
    alone = run_python([TOOL, "--dry_run", f"--runs_dir={tmp_path}", "--resolutions=56"])
    assert "--experiment=mnist/bl1_56_gradual" in alone.stdout  # its chain trains bl1_28 first


@pytest.mark.slow
def test_tiny_study_end_to_end_skips_and_resumes(tmp_path):
    args = [TOOL, f"--runs_dir={tmp_path}", "--pairs=1", "--resolutions=28,56", "--c_t=6",
            "--noscratch_at_56", "--epochs=1", "--attention_passes=1",
            "--extra_flags=--steps_per_epoch=2,--batch_size=16,--eval_batch_size=250,"
            "--eval_passes=2,--checkpoint_every=100,--noexport"]
    first = run_python(args, timeout=900).stdout
    assert "[1/4] bl1_28: trained in" in first and "[4/4] m1_56_ct6_gradual: trained in" in first
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]
    assert [r["name"] for r in runs] == ["bl1_28", "m1_28", "bl1_56_gradual", "m1_56_ct6_gradual"]
    for run in runs:
        assert 0.0 <= run["accuracy"] <= 1.0 and run["macs"] > 0 and run["passes"] == 2
    assert runs[1]["c_t"] == 2.0 and runs[3]["c_t"] == 6.0 and runs[3]["gradual"]
    assert runs[0]["attention"] is None and runs[2]["attention"] is None  # baselines
    assert [a["level"] for a in runs[1]["attention"]] == [2]
    assert [a["level"] for a in runs[3]["attention"]] == [2, 3]
    for entry in runs[1]["attention"] + runs[3]["attention"]:
        assert 0.0 <= entry["attended_share"] <= 1.0 and 0.0 < entry["random_share"] <= 1.0
    assert runs[2]["macs"] > 3.5 * runs[0]["macs"]  # BL1's trunk at 56 px: 4x its 28 px MACs
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n| M1 |") == 2 and table.count("\n| BL1 |") == 2 and "L3: " in table
    assert png_size(tmp_path / "figure4.png") == (600, 900)  # (height, width)
    (tmp_path / "seed_1" / "mnist" / "m1_28" / "metrics.json").unlink()  # interrupted before its evaluation
    second = run_python(args, timeout=600).stdout
    assert "[1/4] bl1_28: finished before, skipped" in second
    assert "[2/4] m1_28: resumed and trained in" in second
    assert "[4/4] m1_56_ct6_gradual: finished before, skipped" in second
    quality = json.loads(run_python(["tools/attention_quality.py",
                                     f"--model_dir={tmp_path / 'seed_1' / 'mnist' / 'm1_56_ct6_gradual'}",
                                     "--json=-"]).stdout)
    assert quality["images"] == 500 and quality["split"] == "validation"
    assert [a["level"] for a in quality["levels"]] == [2, 3]
    # Per checkpoint: the run kept one (step 2, its end), which holds model.keras's weights, so
    # the same positions and deterministic attention give the same shares; a model left at its
    # initial weights would not.
    measure = ["tools/attention_quality.py",
               f"--model_dir={tmp_path / 'seed_1' / 'mnist' / 'm1_56_ct6_gradual'}",
               "--policy=threshold", "--json=-"]
    final = json.loads(run_python(measure).stdout)
    per_checkpoint = json.loads(run_python(measure + ["--checkpoints=all"]).stdout)
    assert [r["step"] for r in per_checkpoint] == [2]
    for ours, theirs in zip(per_checkpoint[0]["levels"], final["levels"]):
        assert ours == pytest.approx(theirs)
