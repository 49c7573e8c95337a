"""The model report: ``report.md`` in the evaluation's folder, a section per figure with a table and a plot
(``plots/*.png``), every checkpoint side by side; intervals are 95%."""

from __future__ import annotations

from pathlib import Path

from moss_data.io.atomic import atomic_write_text


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _ci(ci) -> str:
    return "–" if not ci or ci[0] != ci[0] else f"[{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]"


def _bars(path: Path, title: str, groups: list[str], series: dict[str, list[tuple[float, tuple[float, float]]]],
          ylabel: str, line: float | None = None) -> str:
    """Grouped bars with interval whiskers; returns the markdown image line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(4.5, 1.4 * len(groups) * max(1, len(series)) / 2 + 2), 3.2))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        v = [0 if val is None else val for val, _ in values]
        err = [[max(0, val - ci[0]) if ci and val is not None else 0 for val, ci in values],
               [max(0, ci[1] - val) if ci and val is not None else 0 for val, ci in values]]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, v, width, yerr=err, capsize=3, label=name)
    if line is not None:
        ax.axhline(line, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"![{title}](plots/{path.name})"


def _winrate_section(results: dict, out: Path, key: str, title: str, against: str) -> list[str]:
    rows = {n: s[key] for n, s in results["sections"].items() if key in s}
    if not rows:
        return []
    lines = [f"## {title}", "", against, "",
             "| checkpoint | language | n | wins / ties / losses | win rate [CI] | length-controlled [CI] | "
             "judge consistency | mean chars (model / ref) |", "|---|---|---|---|---|---|---|---|"]
    series: dict[str, list] = {}
    languages = sorted({lang for r in rows.values() for lang in r["figures"]})
    for name, r in rows.items():
        for lang in languages:
            f = r["figures"].get(lang, {"n": 0})
            if not f.get("n"):
                continue
            lines.append(f"| {name} | {lang} | {f['n']} | {f['wins']} / {f['ties']} / {f['losses']} | "
                         f"{_pct(f['win_rate'])} {_ci(f['ci'])} | {_pct(f['lc_win_rate'])} {_ci(f['lc_ci'])} | "
                         f"{_pct(f['consistency'])} | {f['mean_chars']['model']:.0f} / "
                         f"{f['mean_chars']['reference']:.0f} |")
        series[name] = [(r["figures"].get(lang, {}).get("win_rate"), r["figures"].get(lang, {}).get("ci"))
                        for lang in languages]
    lines += ["", _bars(out / "plots" / f"{key}.png", title, languages, series, "win rate", line=0.5), ""]
    return lines


def _rates_section(sections: dict, out: Path, key: str, title: str, intro: str, columns: dict[str, str]) -> list[str]:
    """A section of proportions (``{rate, k, n, ci}`` per column key) with their table and bar plot."""
    figures = {n: s[key] for n, s in sections.items() if key in s}
    if not figures:
        return []
    keys = list(columns)
    lines = [f"## {title}", "", intro, "", "| checkpoint | " + " | ".join(f"{columns[k]} [CI]" for k in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for n, f in figures.items():
        lines.append(f"| {n} | " + " | ".join(f"{_pct(f[k]['rate'])} ({f[k]['k']}/{f[k]['n']}) {_ci(f[k]['ci'])}"
                                              for k in keys) + " |")
    plot_title = title.split(" (")[0]
    lines += ["", _bars(out / "plots" / f"{key}.png", plot_title, [columns[k] for k in keys],
                        {n: [(f[k]["rate"], f[k]["ci"]) for k in keys] for n, f in figures.items()}, "rate"), ""]
    return lines


def write_report(results: dict, out: Path) -> Path:
    out = Path(out)
    sections = results["sections"]
    names = list(results["checkpoints"])
    lines = [f"# Model report: {results['recipe']}", "",
             f"Checkpoints compared; reference for the win rate: **{results['reference']}**; judge: "
             f"`{results['judge']}`. Prompt sets (held out from training): "
             + ", ".join(f"{k} {v}" for k, v in results["sets"].items()) + f". Run: {results['seconds']} s.", "",
             "| checkpoint | model | served by | asked in | quality tag asked |", "|---|---|---|---|---|",
             *[f"| {n} | `{c['model']}` | {c['serving']} | {c.get('prompt_format', 'moss')} | {c['quality'] or '–'} |"
               for n, c in results["checkpoints"].items()], ""]
    lines += _winrate_section(results, out, "winrate", "Win rate against the reference",
                              f"Each checkpoint's replies against **{results['reference']}**'s on the same prompts "
                              "(alpaca_eval's instructions, the held-out alpaca_zh split), judged in both orders; "
                              "a tie or an order-dependent verdict counts half. Length-controlled: the win rate a "
                              "logistic fit on the length difference predicts at equal length.")
    # academic benchmarks
    bench = {n: s["benchmarks"] for n, s in sections.items() if "benchmarks" in s}
    if bench:
        tasks = sorted({t for b in bench.values() for t in b})
        lines += ["## Academic benchmarks (lm-evaluation-harness, local files)", "",
                  "| task | " + " | ".join(bench) + " |", "|---|" + "---|" * len(bench)]
        series: dict[str, list] = {n: [] for n in bench}
        for t in tasks:
            cells = []
            for n, b in bench.items():
                r = b.get(t, {})
                if "value" in r:
                    se = r.get("stderr")
                    cells.append(f"{r['metric']} {r['value']:.3f}" + (f" ± {se:.3f}" if se else "") + f" (n={r['n']})")
                    ci = (max(0, r["value"] - 1.96 * se), min(1, r["value"] + 1.96 * se)) if se else None
                    series[n].append((r["value"], ci))
                else:
                    cells.append(f"skipped: {r.get('skipped', 'not run')}")
                    series[n].append((None, None))
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        lines += ["", _bars(out / "plots" / "benchmarks.png", "Academic benchmarks", tasks, series, "score"), ""]
    # tools
    tools = {n: s["tools"] for n, s in sections.items() if "tools" in s}
    if tools:
        lines += ["## Tool use (held-out questions, calculator + solver + search enabled)", "",
                  "| checkpoint | language | n | right tool [CI] | valid arguments [CI] | grounded answer [CI] |",
                  "|---|---|---|---|---|---|"]
        for n, f in tools.items():
            for lang, g in f.items():
                lines.append(f"| {n} | {lang} | {g['n']} | " + " | ".join(
                    f"{_pct(g[k]['rate'])} {_ci(g[k]['ci'])}" for k in ("right_tool", "valid_args", "grounded"))
                    + " |")
        keys = ("right_tool", "valid_args", "grounded")
        lines += ["", _bars(out / "plots" / "tools.png", "Tool use (all languages)", list(keys),
                            {n: [(f["all"][k]["rate"], f["all"][k]["ci"]) for k in keys] for n, f in tools.items()},
                            "share of questions"), ""]
    lines += _rates_section(
        sections, out, "safety", "Safety (held-out red-team prompts, benign look-alikes)",
        "Refusal: the reply's opening declines (the training data's patterns); safe refusal: it also offers an "
        "alternative; over-refusal: a benign look-alike refused (lower is better).",
        {"refusal_rate": "refusal on harmful", "safe_refusal_rate": "safe refusal",
         "over_refusal_rate": "over-refusal on benign"})
    lines += _rates_section(
        sections, out, "honesty", "Honesty (held-out identity and unanswerable questions)",
        "Identity: the reply answers as MOSS (names MOSS, and Fudan University when asked who made it; claims no "
        "other assistant or maker); uncertainty: a question nobody can answer (the future, private facts) met with "
        "an admission it cannot know; fabrication: a figure or date asserted about the future (lower is better).",
        {"identity_rate": "identity as MOSS", "uncertainty_rate": "admits uncertainty",
         "fabrication_rate": "fabricated answer"})
    lines += _winrate_section(results, out, "steering", "Quality-tag steering",
                              "The same prompts answered under the best and the worst quality tag by one checkpoint, "
                              "judged pairwise in both orders: above 50% the tag steers quality the way it should.")
    held = {n: s["held_out"] for n, s in sections.items() if "held_out" in s}
    if held:
        lines += ["## Held-out conversations", "", "| checkpoint | loss | tool-call exact match |", "|---|---|---|",
                  *[f"| {n} | {h['loss']} | {h.get('tool_calls', {}).get('accuracy')} |" for n, h in held.items()], ""]
    missing = [n for n in names if not sections.get(n)]
    if missing:
        lines += [f"Checkpoints with no figure: {', '.join(missing)}.", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
