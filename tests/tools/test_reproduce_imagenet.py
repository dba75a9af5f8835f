"""tools/reproduce_imagenet.py as a user runs it: the plan with its compute estimate, and the
study end to end on tiny TFRecords of real photos (interrupted, resumed, skipped, collected)."""
import json

import pytest

from tests.helpers import encode, run_python, sample_photos, slim_example, write_tfrecords

TOOL = "tools/reproduce_imagenet.py"


def test_dry_run_plans_chains_in_order_with_their_compute(tmp_path):
    out = run_python([TOOL, "--dry_run", f"--runs_dir={tmp_path}", "--data_dir=DATA",
                      "--experiments=imagenet/m2_256_ct29,multilevel/imagenet_m1_128"]).stdout
    lines = [line for line in out.splitlines() if line.startswith("[")]
    order = [line.split("--experiment=")[1].split()[0] for line in lines]
    assert order == ["imagenet/m2_64_ct4.5", "multilevel/imagenet_m1_64",
                     "imagenet/m2_128_ct13.5", "multilevel/imagenet_m1_128",
                     "imagenet/m2_256_ct29"]
    assert all(f"--stages_dir={tmp_path}" in line and "--data_dir=DATA" in line
               for line in lines)
    assert "1,476.8 MMACs/image x 2 x 3, 200 epochs: 4.54e+18 FLOP, ~13.5 A100-h" in out
    assert "5 runs; still to train: ~" in out and "an estimate, not a measurement" in out


def test_unknown_experiment_is_refused_naming_the_study():
    result = run_python([TOOL, "--dry_run", "--experiments=mnist/m1_28"], check=False)
    assert result.returncode != 0
    assert "Not experiments of the ImageNet study: mnist/m1_28" in result.stderr


@pytest.mark.slow
def test_study_end_to_end_on_tfrecords_of_real_photos(tmp_path):
    data = tmp_path / "records"
    data.mkdir()
    photos = list(sample_photos().values())
    for split, count in (("train", 8), ("validation", 6)):
        examples = [slim_example(encode(photos[i % 3][::2, ::2], "JPEG"), 1 + i % 3, f"{i}.jpg")
                    for i in range(count)]
        write_tfrecords(str(data), split, examples, 1)
    (data / "labels.txt").write_text("cat\ncoffee\nastronaut\n")
    runs = tmp_path / "runs"
    tiny = ("--extra_flags=--dataset=tfrecord,--steps_per_epoch=2,--batch_size=4,"
            "--eval_batch_size=6,--validation_split=none,--noexport,--checkpoint_every=1")
    args = [TOOL, "--experiments=imagenet/bl1_64,imagenet/m1_64_ct1.5", f"--runs_dir={runs}",
            f"--data_dir={data}", "--epochs=1"]
    stopped = run_python(args + [tiny + ",--stop_after_steps=1"], check=False, timeout=600)
    assert stopped.returncode == 1
    assert "imagenet/bl1_64: FAILED (stopped before the end" in stopped.stdout
    assert "run the same command again to resume it" in stopped.stdout
    out = run_python(args + [tiny], timeout=600).stdout
    assert "[1/2] imagenet/bl1_64: resumed and trained" in out
    assert "[2/2] imagenet/m1_64_ct1.5: trained" in out
    results = json.loads((runs / "results.json").read_text())
    assert [r["experiment"] for r in results["runs"]] == ["imagenet/bl1_64",
                                                          "imagenet/m1_64_ct1.5"]
    m1 = results["runs"][1]
    assert [e["level"] for e in m1["levels"]] == [1, 2] and m1["num_examples"] == 6
    assert m1["compute"]["mc_samples"] == 2 and m1["compute"]["epochs"] == 200
    claim = next(c for c in results["claims"] if c["claim"].startswith("M1 above BL1"))
    assert claim["verdict"] in ("holds", "fails", "within noise") and len(claim["checks"]) == 1
    assert (runs / "figure6.png").stat().st_size > 10_000
    assert "Paper Sec. 5.2 claims" in (runs / "results.md").read_text()
    again = run_python(args + [tiny], timeout=600).stdout
    assert again.count("finished before, skipped") == 2
