"""The claims of the paper's Sec. 5.2 (ImageNet, Figure 6), checked on a study's results.

`rows` are the entries `tools/reproduce_imagenet.py` collects, one per finished run: dicts with
"experiment", "model" ("M2", "BL1", ...), "pair", "multilevel", "resolution", "accuracy" and
"macs" (after the last level), "levels" (per level {"level", "accuracy", "mean_macs",
"mean_locations"}), "num_examples" and optionally "accuracy_std" (the spread of evaluation passes)
and "seed_std" (the spread over seeds).

Each comparison is between accuracies, with a noise band: twice the standard error of the
difference, each run's error the largest of its binomial error sqrt(p (1 - p) / n), its evaluation
passes' std and its seeds' std. A comparison whose accuracy difference lies within that band of the
claim's threshold is "within noise": neither holding nor failing. A claim holds when every
comparison holds, fails when one fails, and is otherwise within noise (or "not checked" without
runs).
"""
import math

# "Comparable" / "about": the accuracy difference at most this. The paper gives no figure; 2 points
# leaves a decidable zone around the ~0.6-point noise band of one 50,000-image evaluation (1 point
# would leave +-0.4 points in which the claim can hold at all).
COMPARABLE = 0.02
NOISE_SIGMAS = 2.0

HOLDS, FAILS, WITHIN_NOISE, NOT_CHECKED = "holds", "fails", "within noise", "not checked"


def standard_error(row):
    """The larger of the binomial error of the accuracy and the spreads the row reports."""
    p, n = row["accuracy"], row.get("num_examples") or 0
    binomial = math.sqrt(p * (1 - p) / n) if n else 0.0
    return max(binomial, row.get("accuracy_std") or 0.0, row.get("seed_std") or 0.0)


def noise(a, b):
    return NOISE_SIGMAS * math.hypot(standard_error(a), standard_error(b))


def label(row, level=None):
    c_t = row.get("c_t")
    text = f"{row['model']}{'-ml' if row.get('multilevel') else ''} {row['resolution']} px"
    if c_t:
        text += " c_t " + ",".join(f"{c:g}" for c in (c_t if isinstance(c_t, list) else [c_t]))
    return text + (f" level {level}" if level else "")


def _verdict(value, threshold, band, above):
    """`value` against `threshold` (above: value > threshold holds; else value <= threshold)."""
    if abs(value - threshold) <= band:
        return WITHIN_NOISE
    return HOLDS if (value > threshold) == above else FAILS


def above(a, b, fewer_macs=False):
    """Row a's accuracy above row b's (and, with `fewer_macs`, at fewer MACs per image)."""
    difference, band = a["accuracy"] - b["accuracy"], noise(a, b)
    verdict = _verdict(difference, 0.0, band, above=True)
    figures = (f"{label(a)} {a['accuracy']:.4f} vs {label(b)} {b['accuracy']:.4f} "
               f"({difference:+.4f}, noise ±{band:.4f})")
    if fewer_macs:
        figures += f"; MACs {a['macs'] / 1e6:.1f} M vs {b['macs'] / 1e6:.1f} M"
        if a["macs"] >= b["macs"]:
            verdict = FAILS
    return {"verdict": verdict, "figures": figures}


def comparable(a, b, a_level=None, b_level=None):
    """Accuracies within `COMPARABLE` of each other (rows, or one level of a row)."""
    def at(row, level):
        if level is None:
            return row
        entry = row["levels"][level - 1]
        return dict(row, accuracy=entry["accuracy"], macs=entry["mean_macs"])

    a_at, b_at = at(a, a_level), at(b, b_level)
    difference, band = a_at["accuracy"] - b_at["accuracy"], noise(a_at, b_at)
    verdict = _verdict(abs(difference), COMPARABLE, band, above=False)
    return {"verdict": verdict, "figures":
            f"{label(a, a_level)} {a_at['accuracy']:.4f} vs {label(b, b_level)} "
            f"{b_at['accuracy']:.4f} ({difference:+.4f}; comparable within {COMPARABLE:.2f}, "
            f"noise ±{band:.4f})"}


def _summary(comparisons):
    verdicts = [c["verdict"] for c in comparisons]
    if not verdicts:
        return NOT_CHECKED
    if FAILS in verdicts:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else WITHIN_NOISE


def claims(rows):
    """The claims of Sec. 5.2 on `rows`: [{"claim", "verdict", "checks": [{"verdict",
    "figures"}]}]."""
    single = [r for r in rows if not r.get("multilevel")]

    def find(model, resolution, c_t=None):
        return [r for r in single if r["model"] == model and r["resolution"] == resolution
                and (c_t is None or r.get("c_t") == c_t)]

    checks = {}
    checks[f"BL2 comparable to M2 (within {COMPARABLE:.0%}) at 64 px, and to M2 at 128 px with "
           "c_t 13.5 (the paper's M2 128 px, n_c 14.5)"] = (
        [comparable(m, bl) for bl in find("BL2", 64) for m in find("M2", 64)]
        + [comparable(m, bl) for bl in find("BL2", 128) for m in find("M2", 128, 13.5)])
    checks["M2 at 256 px above BL2 at 256 px at fewer MACs (the paper's M2 with c_t 29 and 39, "
           "n_c 32.8 and 42)"] = [
        above(m, bl, fewer_macs=True) for bl in find("BL2", 256)
        for c_t in (29.0, 39.0) for m in find("M2", 256, c_t)]
    checks["M1 above BL1 at 64, 128 and 256 px (every c_t)"] = [
        above(m, bl) for resolution in (64, 128, 256) for bl in find("BL1", resolution)
        for m in find("M1", resolution)]
    # Multi-level models: level d against the single-resolution model of the same depth
    # (32 * 2**(d-1) px) nearest in MACs.
    multilevel = []
    for ml in (r for r in rows if r.get("multilevel")):
        for entry in ml["levels"]:
            resolution = 32 * 2 ** (entry["level"] - 1)
            peers = find(ml["model"], resolution)
            if peers:
                peer = min(peers, key=lambda r: abs(r["macs"] - entry["mean_macs"]))
                multilevel.append(comparable(ml, peer, a_level=entry["level"]))
    checks[f"Multi-level M_i comparable (within {COMPARABLE:.0%}) at every level to the M_i "
           "trained at that level's resolution (nearest in MACs)"] = multilevel
    return [{"claim": claim, "verdict": _summary(found), "checks": found}
            for claim, found in checks.items()]


def claims_markdown(checked):
    lines = ["## Paper Sec. 5.2 claims on these runs", "",
             f"Noise: {NOISE_SIGMAS:g} x the standard error of the difference (binomial, "
             "evaluation passes or seeds, whichever is largest)."]
    for claim in checked:
        lines.append(f"* **{claim['claim']}**: {claim['verdict']}.")
        lines.extend(f"  * {c['verdict']}: {c['figures']}" for c in claim["checks"])
    return "\n".join(lines) + "\n"
