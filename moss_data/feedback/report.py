"""The feedback report: judge parse rate and quarantine reasons, self-consistency, position bias, reward-model
agreement, and the tag distribution (table and bar chart)."""

from __future__ import annotations

from pathlib import Path

from moss_data.io.atomic import atomic_write_text


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def write_report(out: Path, s: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dist = s["tags"]["distribution"]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(list(dist), list(dist.values()), color=["#c44", "#e84", "#cc4", "#8c4", "#4a4", "#999"])
    ax.set_xlabel("quality tag")
    ax.set_ylabel("responses")
    ax.set_title(f"Quality tags (from the {s['tags']['source'].replace('_', ' ')})")
    fig.tight_layout()
    fig.savefig(out / "tags.png", dpi=100)
    plt.close(fig)

    j, sc, pb, rm = s["judge"], s["self_consistency"], s["position_bias"], s["reward_model"]
    lines = [
        "# Feedback report", "",
        f"{s['responses']} responses, {s['candidates']} candidates judged "
        f"(judge mode: {', '.join(f'{m} x{n}' for m, n in j['modes'].items()) or 'none'}; schema = structured outputs, "
        "choice = field-by-field constrained decoding, prefill = tolerant parser).", "",
        "| judge | value |", "|---|---|",
        f"| parsed / judged | {j['parsed']} / {j['judged']} |",
        f"| parse rate | {_fmt(j['parse_rate'])} |",
        *[f"| quarantined: {k} | {v} |" for k, v in sorted(j["quarantined_by_reason"].items())],
        f"| self-consistency: judged twice | {sc['judged_twice']} |",
        f"| self-consistency: same overall score | {_fmt(sc['overall_agreement'])} |",
        f"| self-consistency: mean abs overall difference | {_fmt(sc['mean_abs_overall_diff'])} |",
        f"| position bias: verdicts parsed / asked | {pb['parsed']} / {pb['comparisons']} |",
        f"| position bias: share choosing the first shown | {_fmt(pb['first_position_rate'])} |",
        f"| position bias: same winner in both orders | {_fmt(pb['order_consistency'])} ({pb['pairs_in_both_orders']} pairs) |",
        "",
        f"Preference pairs: {s['pairs']['train']} train, {s['pairs']['heldout']} held out (`pairs/`).", "",
    ]
    if rm:
        lines += ["| reward model | pairs | agreement |", "|---|---|---|",
                  f"| train (judge labels) | {rm['train_pairs']} | {_fmt(rm['agreement_train'])} |",
                  f"| held out (judge labels) | {rm['heldout_pairs']} | {_fmt(rm['agreement_heldout'])} |",
                  *[f"| external: {Path(k).name} | | {_fmt(v)} |" for k, v in rm["external"].items()], ""]
    else:
        lines += ["No reward model (too few training pairs): tags come from the judge.", ""]
    lines += ["| tag | responses |", "|---|---|", *[f"| {k} | {v} |" for k, v in dist.items()], "",
              f"Tag source: {s['tags']['source']}; untagged share target {s['tags']['untagged_share_target']}. "
              f"Tagged conversations written: {s['tagged_conversations']}.", "", "![tags](tags.png)", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
