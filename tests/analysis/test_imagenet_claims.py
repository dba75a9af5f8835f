"""The Sec. 5.2 claims on hand-made rows: holds, fails and "within noise" for each claim."""
from tf_pyramid.analysis import imagenet_claims as ic

N = 50_000  # ImageNet validation: binomial noise band ~ 2 * sqrt(2 * 0.25 / 50000) = 0.0063


def row(model, resolution, accuracy, macs, c_t=None, multilevel=False, levels=None, **extra):
    return dict(model=model, pair=int(model[-1]), resolution=resolution, accuracy=accuracy,
                macs=macs, c_t=c_t, multilevel=multilevel, num_examples=N,
                levels=levels or [{"level": 1, "accuracy": accuracy, "mean_macs": macs}],
                experiment=f"{model}_{resolution}", **extra)


def by_claim(checked, words):
    return next(c for c in checked if words in c["claim"])


def test_bl2_about_m2_at_64_px():
    checked = ic.claims([row("BL2", 64, 0.400, 196e6), row("M2", 64, 0.405, 270e6, 4.5),
                         row("M2", 64, 0.370, 123e6, 1.5)])
    claim = by_claim(checked, "BL2 comparable to M2")
    assert [c["verdict"] for c in claim["checks"]] == ["holds", "fails"]
    assert claim["verdict"] == "fails"


def test_difference_at_the_margin_is_within_noise():
    # |d| = 0.022: 0.002 from the 2-point margin, inside the ~0.006 band
    claim = by_claim(ic.claims([row("BL2", 64, 0.400, 196e6), row("M2", 64, 0.422, 270e6, 4.5)]),
                     "BL2 comparable to M2")
    assert claim["verdict"] == "within noise"
    assert "noise ±0.0062" in claim["checks"][0]["figures"]


def test_m2_256_above_bl2_256_needs_fewer_macs():
    bl = row("BL2", 256, 0.45, 3134e6)
    holds = ic.claims([bl, row("M2", 256, 0.48, 1477e6, 29.0), row("M2", 256, 0.49, 1968e6, 39.0)])
    assert by_claim(holds, "M2 at 256 px")["verdict"] == "holds"
    costly = ic.claims([bl, row("M2", 256, 0.48, 3500e6, 29.0)])
    assert by_claim(costly, "M2 at 256 px")["verdict"] == "fails"
    close = ic.claims([bl, row("M2", 256, 0.452, 1477e6, 29.0)])
    assert by_claim(close, "M2 at 256 px")["verdict"] == "within noise"
    # c_t 22 is not one the paper names
    assert by_claim(ic.claims([bl, row("M2", 256, 0.40, 1133e6, 22.0)]),
                    "M2 at 256 px")["verdict"] == "not checked"


def test_m1_above_bl1_at_every_resolution_and_c_t():
    rows = [row("BL1", 64, 0.30, 158e6), row("M1", 64, 0.33, 99e6, 1.5),
            row("M1", 64, 0.35, 218e6, 4.5), row("BL1", 128, 0.32, 632e6),
            row("M1", 128, 0.31, 358e6, 8.0)]
    claim = by_claim(ic.claims(rows), "M1 above BL1")
    assert [c["verdict"] for c in claim["checks"]] == ["holds", "holds", "fails"]
    assert claim["verdict"] == "fails"


def test_multilevel_compared_level_by_level_with_the_nearest_model_in_macs():
    ml_levels = [{"level": 1, "accuracy": 0.30, "mean_macs": 49e6},
                 {"level": 2, "accuracy": 0.395, "mean_macs": 200e6}]
    ml = row("M2", 64, 0.395, 200e6, [3.2], multilevel=True, levels=ml_levels)
    rows = [ml, row("M2", 32, 0.305, 49e6), row("M2", 64, 0.30, 123e6, 1.5),
            row("M2", 64, 0.40, 270e6, 4.5)]
    claim = by_claim(ic.claims(rows), "Multi-level")
    assert claim["verdict"] == "holds"
    assert "M2 64 px c_t 4.5" in claim["checks"][1]["figures"]  # nearest in MACs, not c_t 1.5
    ml_levels[1]["accuracy"] = 0.35
    assert by_claim(ic.claims(rows), "Multi-level")["verdict"] == "fails"


def test_seed_spread_widens_the_noise_band():
    a = row("BL2", 64, 0.40, 196e6)
    b = row("M2", 64, 0.43, 270e6, 4.5)
    assert by_claim(ic.claims([a, b]), "BL2 comparable")["verdict"] == "fails"
    b["seed_std"] = a["seed_std"] = 0.01
    assert by_claim(ic.claims([a, b]), "BL2 comparable")["verdict"] == "within noise"


def test_no_runs_means_not_checked():
    checked = ic.claims([])
    assert {c["verdict"] for c in checked} == {"not checked"}
    assert "not checked" in ic.claims_markdown(checked)
