"""The qualitative claims of the paper's Sec. 5.1 (MNIST), checked on a study's results.

`rows` are the per-run entries `tools/reproduce_mnist.py` collects: dicts with "model" ("M1",
"BL2", ...), "pair", "resolution", "c_t", "gradual", "accuracy", "n_c" and "levels". Each claim is
a list of comparisons between two runs of the same kind (same initialisation at 56 px); a claim
holds when every comparison the finished runs allow holds, and is "not checked" without any.
"""

# What "well above", "within about 1%" and "close to c_t" mean in the claims check.
WELL_ABOVE = 0.02     # accuracy points (2 %)
ABOUT_EQUAL = 0.01    # accuracy points (1 %)
N_C_TOLERANCE = 0.25  # |n_c - c_t| <= 25 % of c_t


def _label(row):
    c_t = f" c_t {row['c_t']:g}" if row["c_t"] is not None and row["levels"] > 1 else ""
    init = " gradual" if row["gradual"] else ""
    return f"{row['model']} {row['resolution']} px{c_t}{init}"


def claims(rows):
    """The qualitative claims of the paper's Sec. 5.1, checked on `rows` (`collect`): a list of
    {"claim", "holds" (True, False, or None when no run compares), "checks": [{"holds",
    "figures"}]}; a claim holds when every one of its comparisons does."""
    def find(model, resolution, c_t=None, gradual=False):
        for row in rows:
            if (row["model"], row["resolution"], row["gradual"]) == (model, resolution, gradual) \
                    and (c_t is None or row["c_t"] == c_t):
                return row
        return None

    def compare(a, b, holds):
        if a is None or b is None:
            return None
        difference = a["accuracy"] - b["accuracy"]
        return {"holds": bool(holds(difference)), "figures":
                f"{_label(a)} {a['accuracy']:.3f} vs {_label(b)} {b['accuracy']:.3f} "
                f"({difference:+.3f})"}

    inits = (False, True)
    c_ts = sorted({row["c_t"] for row in rows if row["resolution"] == 56 and row["c_t"]})
    pairs = sorted({int(row["pair"]) for row in rows})
    above = lambda d: d >= WELL_ABOVE  # noqa: E731
    below = lambda d: d < 0  # noqa: E731
    checks = {
        f"M1 at 28 and 56 px well above (>= {WELL_ABOVE:.0%}) BL1 at the same resolution":
            [compare(find("M1", 28), find("BL1", 28), above)]
            + [compare(find("M1", 56, c, g), find("BL1", 56, gradual=g), above)
               for c in c_ts for g in inits],
        "BL1 at 56 px below BL1 at 14 px":
            [compare(find("BL1", 56, gradual=g), find("BL1", 14), below) for g in inits],
        "BL2 at 56 px below BL2 at 28 px":
            [compare(find("BL2", 56, gradual=g), find("BL2", 28), below) for g in inits],
        f"M3 at 28 px within about {ABOUT_EQUAL:.0%} of BL3 at 28 px":
            [compare(find("M3", 28), find("BL3", 28), lambda d: abs(d) <= ABOUT_EQUAL)],
        "M_i accuracy rising with resolution (14 < 28 < 56 px)":
            [compare(find(f"M{i}", 28), find(f"M{i}", 14), lambda d: d > 0) for i in pairs]
            + [compare(find(f"M{i}", 56, c, g), find(f"M{i}", 28), lambda d: d > 0)
               for i in pairs for c in c_ts for g in inits],
        "M_i accuracy rising with n_c (56 px, larger c_t)":
            [compare(find(f"M{i}", 56, high, g), find(f"M{i}", 56, low, g), lambda d: d > 0)
             for i in pairs for g in inits for low, high in zip(c_ts, c_ts[1:])],
    }
    result = []
    for claim, comparisons in checks.items():
        done = [c for c in comparisons if c is not None]
        result.append({"claim": claim, "holds": all(c["holds"] for c in done) if done else None,
                       "checks": done})
    n_c = [{"holds": abs(row["n_c"] - row["c_t"]) <= N_C_TOLERANCE * row["c_t"],
            "figures": f"{_label(row)}: n_c {row['n_c']:.2f}"}
           for row in rows if row["model"].startswith("M") and row["levels"] > 1 and row["c_t"]]
    result.append({"claim": f"n_c close to c_t (within {N_C_TOLERANCE:.0%})",
                   "holds": all(c["holds"] for c in n_c) if n_c else None, "checks": n_c})
    return result


def claims_markdown(checked):
    lines = ["## Paper Sec. 5.1 claims on these runs", ""]
    for claim in checked:
        verdict = {True: "holds", False: "does not hold", None: "not checked (runs missing)"}
        lines.append(f"* **{claim['claim']}**: {verdict[claim['holds']]}.")
        lines.extend(f"  * {'yes' if c['holds'] else 'no'}: {c['figures']}"
                     for c in claim["checks"])
    return "\n".join(lines) + "\n"
