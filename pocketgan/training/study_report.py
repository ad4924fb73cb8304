"""The training study's report: the claims checked on its results, the markdown tables
and the PNG plots (``pocketgan study --report-only`` rewrites them from ``results.json``)."""

from __future__ import annotations

from pathlib import Path

RESULTS = "results.json"


def seed_runs(runs: dict, key: str, cfg: dict) -> list[dict]:
    """A run and its repeats with the extra training seeds (those that finished)."""
    return [runs[key]] + [runs[f"{key}_seed{s}"] for s in cfg.get("rank_seeds", ()) if f"{key}_seed{s}" in runs]


def _mean_std(rs: list[dict]) -> tuple[float, float]:
    values = [r["psnr_db"] for r in rs]
    return float(sum(values) / len(values)), float(__import__("numpy").std(values))


def claims(results: dict) -> list[dict]:
    """The issue's claims, checked on the results."""
    runs, cfg = results["runs"], results["config"]
    out = []
    scratch, lora = runs["scratch"], runs["lora_uniform_r1"]
    reach = next((e for e in lora["evals"] if e["psnr_db"] >= scratch["psnr_db"]), None)
    base_params = lora.get("base_parameters")
    share = lora["trainable_parameters"] / base_params if base_params else None
    ratio = reach["seconds"] / scratch["seconds"] if reach else None
    out.append(
        {
            "claim": "LoRA reaches the from-scratch held-out PSNR in ≤ 1/5 of its wall time, ≤ 1% trainable",
            "measured": (
                f"reached {scratch['psnr_db']:.2f} dB after {reach['seconds']:.0f} s = {ratio:.3f}x of "
                f"{scratch['seconds']:.0f} s"
                if reach
                else f"never reached {scratch['psnr_db']:.2f} dB (best {max(e['psnr_db'] for e in lora['evals']):.2f})"
            )
            + (f"; {100 * share:.2f}% trainable" if share else ""),
            "met": bool(reach and ratio <= 0.2 and share is not None and share <= 0.01),
        }
    )
    b = cfg["budget_rank"]
    uni, srch = seed_runs(runs, f"lora_uniform_r{b}", cfg), seed_runs(runs, "lora_searched", cfg)
    mu, su, ms, ss = _mean_std(uni) + _mean_std(srch)
    margin = ms - mu
    noise = max(su, ss)
    out.append(
        {
            "claim": "searched ranks beat uniform ranks at equal parameter count",
            "measured": (
                f"searched {ms:.2f} ± {ss:.2f} dB with {srch[0]['trainable_parameters']:,} params "
                f"vs uniform rank {b} {mu:.2f} ± {su:.2f} dB with {uni[0]['trainable_parameters']:,} "
                f"(mean ± std over {len(srch)} training seeds; difference {margin:+.2f} dB)"
            ),
            "met": margin > noise and srch[0]["trainable_parameters"] <= uni[0]["trainable_parameters"],
        }
    )
    full = lora["psnr_db"]
    within = [n for n in cfg["pair_counts"] if runs.get(f"pairs_cluster_{n}", {}).get("psnr_db", -1e9) >= full - 0.5]
    out.append(
        {
            "claim": "smallest number of pairs within 0.5 dB of training on all pairs",
            "measured": (
                f"{min(within)} pairs ({runs[f'pairs_cluster_{min(within)}']['psnr_db']:.2f} dB vs "
                f"{full:.2f} dB on all {cfg['pairs']})"
                if within
                else f"none of {list(cfg['pair_counts'])} is within 0.5 dB of {full:.2f} dB"
            ),
            "met": bool(within),
        }
    )
    return out


def _main_runs(budget: int) -> list[tuple[str, str]]:
    """(label, run key) of the main comparison (a)-(d)."""
    return [
        ("(a) from scratch", "scratch"),
        ("(b) full fine-tune", "full_finetune"),
        ("(c) LoRA uniform rank 1", "lora_uniform_r1"),
        (f"(c) LoRA uniform rank {budget}", f"lora_uniform_r{budget}"),
        (f"(d) LoRA searched ranks (rank-{budget} budget)", "lora_searched"),
    ]


def _ablation(runs: dict) -> list[tuple[str, dict]]:
    """(label, run) of the loss ablation's steps that finished, L1 first."""
    steps = [(runs[k]["label"], runs[k]) for k in sorted(runs) if k.startswith("loss_")]
    return [("L1", runs["lora_uniform_r1"])] + steps


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(results: dict, plots: Path) -> None:
    """psnr_vs_time.png, psnr_vs_pairs.png and (with an ablation) loss_ablation.png in ``plots``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, cfg = results["runs"], results["config"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, key in _main_runs(cfg["budget_rank"]):
        ev = runs[key]["evals"]
        ax.plot([e["seconds"] for e in ev], [e["psnr_db"] for e in ev], marker=".", label=label)
    ax.axhline(runs["scratch"]["psnr_db"], color="grey", ls=":", lw=1)
    ax.set(
        xlabel="training wall time (s, 2 CPU threads)",
        ylabel="held-out PSNR vs teacher (dB)",
        title=f"concept '{cfg['concept']}' (held out of base training)",
    )
    ax.legend(fontsize=8)
    _save(fig, plots / "psnr_vs_time.png")

    fig, ax = plt.subplots(figsize=(6, 3.8))
    counts = list(cfg["pair_counts"]) + [cfg["pairs"]]
    cluster = [runs[f"pairs_cluster_{n}"]["psnr_db"] for n in cfg["pair_counts"]] + [runs["lora_uniform_r1"]["psnr_db"]]
    ax.plot(counts, cluster, marker="o", label="k-means selection")
    rnd = [(n, runs[f"pairs_random_{n}"]["psnr_db"]) for n in cfg["random_counts"] if f"pairs_random_{n}" in runs]
    if rnd:
        ax.plot(*zip(*rnd), marker="x", ls="--", label="random selection")
    ax.axhline(runs["lora_uniform_r1"]["psnr_db"] - 0.5, color="grey", ls=":", lw=1, label="all pairs − 0.5 dB")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="training pairs", ylabel="held-out PSNR (dB)", title="LoRA rank 1: quality vs number of pairs")
    ax.legend(fontsize=8)
    _save(fig, plots / "psnr_vs_pairs.png")

    ablation = _ablation(runs)
    if len(ablation) > 1:
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        ax.bar([a for a, _ in ablation], [r["psnr_db"] for _, r in ablation])
        lo = min(r["psnr_db"] for _, r in ablation)
        ax.set_ylim(lo - 1.0, max(r["psnr_db"] for _, r in ablation) + 0.5)
        ax.set(ylabel="held-out PSNR (dB)", title="loss ablation (LoRA rank 1)")
        ax.tick_params(axis="x", labelsize=7)
        _save(fig, plots / "loss_ablation.png")


def _head_lines(results: dict, rel: str) -> list[str]:
    """The report's title, settings, claims and main table."""
    runs, cfg = results["runs"], results["config"]
    lines = [
        "# Training study: E2GAN's claims on a 2-core CPU",
        "",
        "Produced by `pocketgan study` (the numbers below are from its last run; raw results in "
        f"[`{rel}/{RESULTS}`]({rel}/{RESULTS})). Concept **`{cfg['concept']}`**, held out of the base's training; "
        "the base is the embedded bundle's. Quality is PSNR / SSIM against the teacher on the shipped photos, which "
        "no run trains on. Wall time is training only (evaluation excluded), 2 threads.",
        "",
        f"Settings: {cfg['pairs']} training pairs (256² crops), batch {cfg['batch_size']}, crop {cfg['crop']}, "
        f"from scratch {cfg['scratch_steps']} steps, every other run {cfg['concept_steps']} steps, "
        f"evaluation every {cfg['eval_every']} steps, seed {cfg['seed']}. Main comparison with L1 only.",
        "",
        "## Claims",
        "",
        "| claim | measured | met |",
        "|---|---|---|",
        *[f"| {c['claim']} | {c['measured']} | {'yes' if c['met'] else '**no**'} |" for c in claims(results)],
        "",
        "## (a) scratch, (b) full fine-tune, (c) uniform LoRA, (d) searched LoRA",
        "",
        "| run | PSNR | SSIM | wall time | trainable params | % of base | adapter bytes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base_params = runs["lora_uniform_r1"].get("base_parameters") or 1
    for label, key in _main_runs(cfg["budget_rank"]):
        r = runs[key]
        lines.append(
            f"| {label} | {r['psnr_db']:.2f} dB | {r['ssim']:.3f} | {r['seconds']:.0f} s | "
            f"{r['trainable_parameters']:,} | {100 * r['trainable_parameters'] / base_params:.2f}% | "
            f"{r['adapter_bytes']:,} |"
        )
    return lines + ["", f"![PSNR vs time]({rel}/psnr_vs_time.png)", ""]


def _rank_lines(results: dict) -> list[str]:
    """The searched ranks, and uniform vs searched over training seeds."""
    runs, cfg = results["runs"], results["config"]
    b, lines = cfg["budget_rank"], []
    search = runs["lora_searched"].get("search")
    if search:
        lines += [
            "### The searched ranks",
            "",
            f"Probe: rank {search['probe_rank']} on every layer for {search['probe_steps']} steps "
            f"({search['probe_seconds']:.0f} s, not in the table's wall time). "
            f"Budget: {search['budget_parameters']:,} "
            f"LoRA parameters (uniform rank {b}); used {search['parameters']:,}.",
            "",
            "| layer | rank | update energy kept | update norm | parameters |",
            "|---|---:|---:|---:|---:|",
            *[
                f"| `{row['layer']}` | {row['rank']} | {100 * row['energy_kept']:.1f}% | "
                f"{row['update_norm']:.4f} | {row['parameters']:,} |"
                for row in search["layers"]
            ],
            "",
        ]
    uni, srch = seed_runs(runs, f"lora_uniform_r{b}", cfg), seed_runs(runs, "lora_searched", cfg)
    if len(uni) > 1 or len(srch) > 1:
        seeds = [cfg["seed"], *cfg.get("rank_seeds", ())]
        lines += [
            "### Uniform vs searched over training seeds",
            "",
            "The same ranks trained with other seeds (batches, crops, LoRA init), to size the noise:",
            "",
            f"| training seed | uniform rank {b} | searched |",
            "|---:|---:|---:|",
            *[f"| {seed} | {u['psnr_db']:.2f} dB | {r['psnr_db']:.2f} dB |" for seed, u, r in zip(seeds, uni, srch)],
            f"| mean ± std | {_mean_std(uni)[0]:.2f} ± {_mean_std(uni)[1]:.2f} dB | "
            f"{_mean_std(srch)[0]:.2f} ± {_mean_std(srch)[1]:.2f} dB |",
            "",
        ]
    return lines


def _data_lines(results: dict, rel: str) -> list[str]:
    """Quality against the number of pairs, and the loss ablation."""
    runs, cfg = results["runs"], results["config"]
    lines = [
        "## Quality against the number of pairs",
        "",
        "| pairs | k-means selection | random selection |",
        "|---:|---:|---:|",
    ]
    for n in cfg["pair_counts"]:
        r = runs.get(f"pairs_random_{n}")
        random_cell = f"{r['psnr_db']:.2f} dB" if r else "—"
        lines.append(f"| {n} | {runs[f'pairs_cluster_{n}']['psnr_db']:.2f} dB | {random_cell} |")
    lines += [
        f"| {cfg['pairs']} (all) | {runs['lora_uniform_r1']['psnr_db']:.2f} dB | |",
        "",
        f"![PSNR vs pairs]({rel}/psnr_vs_pairs.png)",
        "",
    ]
    ablation = _ablation(runs)
    if len(ablation) > 1:
        lines += [
            "## Loss ablation (LoRA rank 1, all pairs)",
            "",
            "| losses | PSNR | SSIM | wall time |",
            "|---|---:|---:|---:|",
            *[f"| {a} | {r['psnr_db']:.2f} dB | {r['ssim']:.3f} | {r['seconds']:.0f} s |" for a, r in ablation],
            "",
            f"![loss ablation]({rel}/loss_ablation.png)",
            "",
        ]
    return lines


def write_report(results: dict, out: Path) -> None:
    """Markdown report + PNG plots next to it (``<out stem>/*.png``)."""
    from pocketgan.atomic import atomic_write_bytes

    plots = out.parent / out.stem
    plots.mkdir(parents=True, exist_ok=True)
    write_plots(results, plots)
    lines = _head_lines(results, plots.name) + _rank_lines(results) + _data_lines(results, plots.name)
    atomic_write_bytes(out, "\n".join(lines).encode())
