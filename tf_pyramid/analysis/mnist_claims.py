"""The claims of the paper's Sec. 5.1 and A.5.3 (MNIST), checked as the paper states them.

Input: the summary rows of a study (`tools/reproduce_mnist.py` `summarize`), one per
configuration, its figures over the seeds it ran: dicts with "variant", "model" ("M1", "BL2",
...), "resolution", "c_t", "gradual", "levels", "accuracy" (mean over seeds), "accuracy_std"
(standard deviation over seeds; None for one seed), "seeds" (how many), and, for pyramid models,
"n_c" (sampled attention, the paper's protocol) and "n_c_threshold" (threshold attention, when
the run measured it).

How a comparison is read:
* Where the paper reports the better of scratch and gradual learning (Figure 4, A.5.2: every 56 px
  point), the better of the two finished runs stands for the configuration.
* A difference is judged against the seed noise: its standard error
  se = sqrt(s_a^2 / n_a + s_b^2 / n_b) from the seed standard deviations. A claim "a above b by
  margin m" holds when a - b - m > NOISE_SE * se, fails when a - b - m < -NOISE_SE * se, and is
  "within noise" in between. "a about b" (within m) holds when |a - b| + NOISE_SE * se <= m and
  fails when |a - b| - NOISE_SE * se > m. With one seed on either side there is no noise
  estimate: the comparison reads "one seed" and decides nothing.
* A claim holds when each of its comparisons holds, fails when any fails, and is otherwise
  "within noise" (or "one seed"); "not checked" when the study has none of its runs.
"""
import math

# What the paper's words are taken to mean.
WELL_ABOVE = 0.02     # "significantly outperform": 2 accuracy points
ABOUT_EQUAL = 0.01    # "the same accuracy level", "slightly better": within 1 point
N_C_TOLERANCE = 0.25  # n_c "close to" c_t: within 25 % of c_t
NOISE_SE = 2.0        # a difference decides only beyond 2 standard errors of the seed noise

HOLDS, FAILS, WITHIN_NOISE, ONE_SEED, NOT_CHECKED = (
    "holds", "fails", "within noise", "one seed", "not checked")

# Figures the paper states in its text (Sec. 5.1, A.5.3): attended cells n_c of the models in
# Figure 4 per (variant, model, resolution, c_t), and M3 at 28 px "over 99%" on plain MNIST.
PAPER_N_C = {("plain", "M3", 28, 2.0): 2.2, ("noisy", "M3", 56, 6.0): 6.1,
             ("noisy", "M3", 56, 12.0): 12.1, ("noisy", "M2", 56, 6.0): 6.1,
             ("noisy", "M1", 56, 6.0): 6.3, ("noisy", "M2", 28, 2.0): 2.0,
             ("noisy", "M1", 28, 2.0): 2.2}
PAPER_M3_28_PLAIN = 0.99


def label(row):
    c_t = f" c_t {row['c_t']:g}" if row.get("c_t") is not None and row["levels"] > 1 else ""
    init = " gradual" if row.get("gradual") else ""
    return f"{row.get('variant', '')} {row['model']}-{row['resolution']}{c_t}{init}".strip()


def _figure(row):
    std = row.get("accuracy_std")
    seeds = row.get("seeds") or 1
    spread = f" ± {std:.3f}" if std is not None and seeds > 1 else ""
    return f"{label(row)} {row['accuracy']:.3f}{spread} ({seeds} seed{'s' if seeds > 1 else ''})"


def standard_error(*rows):
    """Standard error of a difference of the rows' mean accuracies (one row: of its mean); None
    when a row has fewer than 2 seeds."""
    total = 0.0
    for row in rows:
        seeds, std = row.get("seeds") or 1, row.get("accuracy_std")
        if seeds < 2 or std is None:
            return None
        total += std * std / seeds
    return math.sqrt(total)


def _verdict(excess, se):
    """`excess` > 0 means the claim's side; judged against NOISE_SE * se."""
    if se is None:
        return ONE_SEED
    if excess > NOISE_SE * se:
        return HOLDS
    if excess < -NOISE_SE * se:
        return FAILS
    return WITHIN_NOISE


def above(a, b, margin=0.0):
    """a above b by more than `margin` (a check dict), or None when a run is missing."""
    if a is None or b is None:
        return None
    difference = a["accuracy"] - b["accuracy"]
    se = standard_error(a, b)
    need = f" (needs > {margin:+.3f})" if margin else ""
    return {"verdict": _verdict(difference - margin, se), "difference": difference, "se": se,
            "figures": f"{_figure(a)} vs {_figure(b)}: {difference:+.3f}{need}"
                       + (f", se {se:.3f}" if se is not None else "")}


def about(a, b, margin=ABOUT_EQUAL):
    """|a - b| within `margin`."""
    if a is None or b is None:
        return None
    difference = a["accuracy"] - b["accuracy"]
    se = standard_error(a, b)
    if se is None:
        verdict = ONE_SEED
    elif abs(difference) + NOISE_SE * se <= margin:
        verdict = HOLDS
    elif abs(difference) - NOISE_SE * se > margin:
        verdict = FAILS
    else:
        verdict = WITHIN_NOISE
    return {"verdict": verdict, "difference": difference, "se": se,
            "figures": f"{_figure(a)} vs {_figure(b)}: {difference:+.3f} (needs within "
                       f"±{margin:.3f})" + (f", se {se:.3f}" if se is not None else "")}


def at_least(a, value, paper):
    """a's accuracy above an absolute figure the paper states."""
    if a is None:
        return None
    se = standard_error(a)
    return {"verdict": _verdict(a["accuracy"] - value, se), "difference": a["accuracy"] - value,
            "se": se, "figures": f"{_figure(a)}; paper: {paper}"}


def gap_larger(a_hi, b_hi, a_lo, b_lo):
    """(a_hi - b_hi) larger than (a_lo - b_lo): e.g. M1 - BL1 on textured against plain."""
    if None in (a_hi, b_hi, a_lo, b_lo):
        return None
    gap_hi = a_hi["accuracy"] - b_hi["accuracy"]
    gap_lo = a_lo["accuracy"] - b_lo["accuracy"]
    se = standard_error(a_hi, b_hi, a_lo, b_lo)
    return {"verdict": _verdict(gap_hi - gap_lo, se), "difference": gap_hi - gap_lo, "se": se,
            "figures": f"gap {gap_hi:+.3f} ({_figure(a_hi)} - {_figure(b_hi)}) vs gap "
                       f"{gap_lo:+.3f} ({_figure(a_lo)} - {_figure(b_lo)})"
                       + (f", se {se:.3f}" if se is not None else "")}


def combine(verdicts):
    if not verdicts:
        return NOT_CHECKED
    if FAILS in verdicts:
        return FAILS
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return WITHIN_NOISE if WITHIN_NOISE in verdicts else ONE_SEED


class _Rows:
    """Look-ups in the summary rows; 56 px configurations as the better of scratch / gradual."""

    def __init__(self, rows):
        self.rows = rows

    def variants(self):
        return sorted({row.get("variant", "plain") for row in self.rows})

    def find(self, variant, model, resolution, c_t=None, gradual=None):
        found = [row for row in self.rows
                 if row.get("variant", "plain") == variant and row["model"] == model
                 and row["resolution"] == resolution
                 and (c_t is None or row.get("c_t") == c_t)
                 and (gradual is None or bool(row.get("gradual")) == gradual)]
        return found

    def best(self, variant, model, resolution, c_t=None):
        """The configuration the paper would report: the better of scratch and gradual."""
        found = self.find(variant, model, resolution, c_t)
        return max(found, key=lambda row: row["accuracy"]) if found else None


def claims(rows):
    """The paper's MNIST claims on `rows` (summary rows, any variants): a list of {"claim",
    "variant", "verdict", "checks": [{"verdict", "difference", "se", "figures"}]}."""
    data = _Rows(rows)
    result = []

    def add(claim, variant, checks):
        done = [c for c in checks if c is not None]
        result.append({"claim": claim, "variant": variant,
                       "verdict": combine([c["verdict"] for c in done]), "checks": done})

    for variant in data.variants():
        best = lambda *args, v=variant: data.best(v, *args)  # noqa: E731
        c_ts = sorted({row["c_t"] for row in data.find(variant, "M3", 56)
                       + data.find(variant, "M2", 56) + data.find(variant, "M1", 56)
                       if row.get("c_t")})
        # Sec. 5.1, Figure 4 (a)-(c); "our previous analysis applies" to textured and noisy.
        add(f"M1 at 28 and 56 px well above (> {WELL_ABOVE:.0%}) BL1 at the same resolution",
            variant, [above(best("M1", 28), best("BL1", 28), WELL_ABOVE)]
            + [above(best("M1", 56, c), best("BL1", 56), WELL_ABOVE) for c in c_ts])
        add("BL1 at 56 px below BL1 at 14 px", variant,
            [above(best("BL1", 14), best("BL1", 56))])
        add(f"BL3 at 28 px slightly better than M3 at 28 px (within {ABOUT_EQUAL:.0%})",
            variant, [about(best("M3", 28), best("BL3", 28))])
        rising = [above(best("M3", 28), best("M3", 14))]
        top = c_ts[-1:] if variant == "noisy" else c_ts  # noisy: the c_t 6 dip, below
        rising += [above(best("M3", 56, c), best("M3", 28)) for c in top]
        add("M3 accuracy rising with resolution (14 < 28 < 56 px)", variant, rising)
        add("M3 accuracy rising with attended cells (56 px, larger c_t)", variant,
            [above(best("M3", 56, high), best("M3", 56, low))
             for low, high in zip(c_ts, c_ts[1:])])
        if variant == "plain":
            add(f"M3 at 14 px about BL3 at 14 px (within {ABOUT_EQUAL:.0%})", variant,
                [about(best("M3", 14), best("BL3", 14))])
            add("M3 at 28 px above 99%", variant,
                [at_least(best("M3", 28), PAPER_M3_28_PLAIN, "over 99% (M3-28, n_c 2.2)")])
            add("BL2 at 56 px below BL2 at 28 px", variant,
                [above(best("BL2", 28), best("BL2", 56))])
        if variant == "textured":  # A.5.3
            add("BL2 at 56 px above BL2 at 28 px (textured, unlike plain)", variant,
                [above(best("BL2", 56), best("BL2", 28))])
            add("M1 - BL1 gap larger on textured than on plain", variant,
                [gap_larger(best("M1", r, c), best("BL1", r),
                            data.best("plain", "M1", r, c), data.best("plain", "BL1", r))
                 for r, c in [(28, None)] + [(56, c) for c in c_ts]])
        if variant == "noisy":  # A.5.3
            add("M_i at 56 px with c_t 6 below M_i at 28 px (the noise dip)", variant,
                [above(best(f"M{i}", 28), best(f"M{i}", 56, 6.0)) for i in (3, 2, 1)])
            add("M3 at 56 px with c_t 12 at least M3 at 28 px", variant,
                [above(best("M3", 56, 12.0), best("M3", 28))])
            add("BL3 at 56 px above BL3 at 28 px", variant,
                [above(best("BL3", 56), best("BL3", 28))])
        add(f"n_c close to c_t (within {N_C_TOLERANCE:.0%}), sampled and threshold attention",
            variant, [_n_c_check(row) for row in rows
                      if row.get("variant", "plain") == variant and row["model"].startswith("M")
                      and row["levels"] > 1 and row.get("c_t")])
    return result


def _n_c_check(row):
    """n_c (sampled, the paper's protocol) against c_t; the threshold count shown beside it."""
    c_t, n_c = row["c_t"], row["n_c"]
    paper = PAPER_N_C.get((row.get("variant", "plain"), row["model"], row["resolution"], c_t))
    threshold = row.get("n_c_threshold")
    text = (f"{label(row)}: n_c {n_c:.2f} sampled"
            + (f", {threshold:.2f} threshold" if threshold is not None else "")
            + (f"; paper {paper:g}" if paper is not None else ""))
    return {"verdict": HOLDS if abs(n_c - c_t) <= N_C_TOLERANCE * c_t else FAILS,
            "difference": n_c - c_t, "se": None, "figures": text}


def claims_markdown(checked):
    lines = ["## The paper's MNIST claims (Sec. 5.1, A.5.3) on these runs", "",
             f"Verdicts against the seed noise (a difference decides beyond {NOISE_SE:g} standard "
             "errors; 'one seed': no noise estimate). At 56 px each configuration is the better "
             "of scratch and gradual, as the paper reports.", ""]
    for claim in checked:
        lines.append(f"* **{claim['claim']}** ({claim['variant']}): {claim['verdict']}.")
        lines.extend(f"  * {c['verdict']}: {c['figures']}" for c in claim["checks"])
    return "\n".join(lines) + "\n"
