"""tools/reproduce_mnist.py (the paper's MNIST study through the flagfiles) and
tools/attention_quality.py, on a tiny grid: one pair, 28 px then 56 px gradual, 2 steps each;
the claims check (tf_pyramid.analysis.mnist_claims) on hand-made results."""
import json

import pytest

from tests.helpers import png_size, run_python
from tf_pyramid.analysis import mnist_claims

TOOL = "tools/reproduce_mnist.py"


def _row(model, resolution, accuracy, c_t=None, gradual=False, n_c=0.0):
    levels = {14: 1, 28: 2, 56: 3}[resolution] if model.startswith("M") else 1
    return {"model": model, "pair": int(model[-1]), "resolution": resolution, "c_t": c_t,
            "gradual": gradual, "accuracy": accuracy, "n_c": n_c, "levels": levels}


def test_claims_are_checked_comparison_by_comparison():
    rows = [_row("BL1", 14, 0.90), _row("BL1", 28, 0.80), _row("M1", 14, 0.85),
            _row("M1", 28, 0.95, c_t=2.0, n_c=2.2), _row("BL1", 56, 0.70),
            _row("M1", 56, 0.97, c_t=6.0, n_c=6.1), _row("M1", 56, 0.96, c_t=12.0, n_c=20.0),
            _row("BL3", 28, 0.950), _row("M3", 28, 0.945, c_t=2.0, n_c=2.0)]
    checked = mnist_claims.claims(rows)

    def claim(start):
        return next(c for c in checked if c["claim"].startswith(start))

    m1_above = claim("M1 at 28 and 56 px")
    assert m1_above["holds"] is True and len(m1_above["checks"]) == 3  # no gradual 56 px runs
    assert "M1 28 px c_t 2 0.950 vs BL1 28 px 0.800 (+0.150)" in m1_above["checks"][0]["figures"]
    assert claim("BL1 at 56")["holds"] is True                 # 0.70 < 0.90
    assert claim("BL2 at 56")["holds"] is None                 # no BL2 runs
    assert claim("M3 at 28")["holds"] is True                  # 0.945 within 0.01 of 0.950
    rising = claim("M_i accuracy rising with resolution")
    assert rising["holds"] is True and len(rising["checks"]) == 3   # 14 < 28 < 56 (both c_t)
    n_c_rising = claim("M_i accuracy rising with n_c")
    assert n_c_rising["holds"] is False                      # c_t 12 (0.96) below c_t 6 (0.97)
    close = claim("n_c close")
    assert close["holds"] is False and [c["holds"] for c in close["checks"]] == [
        True, True, False, True]                             # 20 cells for c_t 12 is not close
    text = mnist_claims.claims_markdown(checked)
    assert "does not hold" in text and "not checked (runs missing)" in text
    rows[-1]["accuracy"] = 0.93                              # 2 points below BL3
    assert not [c for c in mnist_claims.claims(rows) if c["claim"].startswith("M3")][0]["holds"]


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
    assert f"--stages_dir={tmp_path} " in gradual and "--experiment=mnist/m2_56_ct12_gradual" \
        in gradual and "--variant=textured" in gradual and "--epochs=3" in gradual
    assert f"--model_dir={tmp_path}/mnist/m2_28 " in out[names.index("m2_28")]
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
    (tmp_path / "mnist" / "m1_28" / "metrics.json").unlink()  # interrupted before its evaluation
    second = run_python(args, timeout=600).stdout
    assert "[1/4] bl1_28: finished before, skipped" in second
    assert "[2/4] m1_28: resumed and trained in" in second
    assert "[4/4] m1_56_ct6_gradual: finished before, skipped" in second
    quality = json.loads(run_python(["tools/attention_quality.py",
                                     f"--model_dir={tmp_path / 'mnist' / 'm1_56_ct6_gradual'}",
                                     "--json=-"]).stdout)
    assert quality["images"] == 500 and quality["split"] == "validation"
    assert [a["level"] for a in quality["levels"]] == [2, 3]
    # Per checkpoint: the run kept one (step 2, its end), which holds model.keras's weights, so
    # the same positions and deterministic attention give the same shares; a model left at its
    # initial weights would not.
    measure = ["tools/attention_quality.py",
               f"--model_dir={tmp_path / 'mnist' / 'm1_56_ct6_gradual'}",
               "--policy=threshold", "--json=-"]
    final = json.loads(run_python(measure).stdout)
    per_checkpoint = json.loads(run_python(measure + ["--checkpoints=all"]).stdout)
    assert [r["step"] for r in per_checkpoint] == [2]
    for ours, theirs in zip(per_checkpoint[0]["levels"], final["levels"]):
        assert ours == pytest.approx(theirs)
