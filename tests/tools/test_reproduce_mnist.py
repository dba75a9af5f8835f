"""tools/reproduce_mnist.py (the paper's MNIST study through the flagfiles) and
tools/attention_quality.py, on a tiny grid: one pair, 28 px then 56 px gradual, 2 steps each."""
import json

import pytest

from tests.helpers import png_size, run_python

TOOL = "tools/reproduce_mnist.py"


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
    assert f"--init_from={tmp_path}/m2_28" in gradual and "--flagfile=flags/mnist/m2_56_ct12_" \
        "gradual.cfg" in gradual and "--variant=textured" in gradual and "--epochs=3" in gradual
    refused = run_python([TOOL, "--dry_run", f"--runs_dir={tmp_path}", "--resolutions=56"],
                         check=False)
    assert refused.returncode != 0
    assert "bl1_56_gradual starts from the 28 px run bl1_28" in refused.stderr


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
    (tmp_path / "m1_28" / "metrics.json").unlink()  # as if interrupted before the evaluation
    second = run_python(args, timeout=600).stdout
    assert "[1/4] bl1_28: finished before, skipped" in second
    assert "[2/4] m1_28: resumed and trained in" in second
    assert "[4/4] m1_56_ct6_gradual: finished before, skipped" in second
    quality = json.loads(run_python(["tools/attention_quality.py",
                                     f"--model_dir={tmp_path / 'm1_56_ct6_gradual'}",
                                     "--json=-"]).stdout)
    assert quality["images"] == 500 and quality["split"] == "validation"
    assert [a["level"] for a in quality["levels"]] == [2, 3]
