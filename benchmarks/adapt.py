"""Unsupervised adaptation on the corpus text of BEIR collections, measured before and after.

For each collection: ``adapt`` the backbone on ``corpus.jsonl`` alone (no queries, no qrels), then
run the evaluation harness on BM25, the unadapted and adapted LLaRA encoders and the hybrid (adapted
+ BM25). Every recipe tried (steps, learning rate, window, batch, whitening) is kept:
``results/adaptation.json`` accumulates one entry per (collection, recipe) and ``adaptation.md`` shows
them side by side, so a new recipe is compared with the old ones rather than replacing them. Adapters live in
``runs/adapt-<name>-<recipe>``; an existing adapter is reused and an interrupted training resumes from
its checkpoints, so rerunning the command continues where it stopped.

    python benchmarks/adapt.py                      # cranfield and cacm, the defaults below
    python benchmarks/adapt.py --datasets adi --max-steps 20
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import get_args

from llara_rag.cli.flags import add_options, options_of
from llara_rag.encoding.adapter import (
    LLARA_CONFIG_FILE,
    NONE,
    SHIPPED,
    WHITENING_FILE,
    adapter_digest,
    read_adapter_info,
)
from llara_rag.encoding.backbone import DEFAULT_MODEL
from llara_rag.encoding.encoder import EncoderConfig
from llara_rag.evaluation import EvaluationConfig, evaluate
from llara_rag.training import AdaptationArguments, adapt
from llara_rag.training.data.pseudo_pairs import PairConfig, Teacher
from llara_rag.training.unsupervised import MEASURED_SUPERVISED_STEPS, STAGE_ADAPTER

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
SYSTEMS = ("bm25", "minilm", "minilm-hybrid", "llara-base", "llara", "hybrid")
"""Each adapted row stands beside the peers a user could build without LLaRA: MiniLM, and MiniLM + BM25."""
logger = logging.getLogger("benchmarks.adapt")
GOAL_BM25_SHARE, GOAL_HYBRID_GAIN = 0.8, 0.03
FUSIONS = {"rrf": "reciprocal ranks", "z-score": "z-scores"}
"""How the hybrid fused its two rankings: reciprocal ranks (k=60) until the harness moved to z-scores."""
GOALS = (
    f"adapted >= {GOAL_BM25_SHARE} x BM25",
    f"hybrid >= BM25 + {GOAL_HYBRID_GAIN}",
    "adapted >= MiniLM",
    "hybrid >= MiniLM + BM25",
)
"""Issue #16's two goals, then issue #37's: the adapted encoder against the peers a user would build instead."""


def recipe_of(args: argparse.Namespace) -> dict[str, float | int | str]:
    recipe: dict[str, float | int | str] = {
        "stages": args.stages,
        "steps": args.max_steps,
        "lr": args.lr,
        "token_lr_scale": args.special_tokens_lr_scale,
        "lm_weight": args.lm_weight,
        "bow_weight": args.bow_weight,
        "targets": args.target_weighting,
        "window": args.window,
        "batch": args.batch_size,
        "whitening": args.whitening_dims,
    }
    if "contrastive" in args.stages:
        recipe |= {
            "pairs": args.pair_maker,
            "contrastive_steps": args.contrastive_steps,
            "contrastive_lr": args.contrastive_lr,
            "contrastive_batch": args.contrastive_batch_size,
            "temperature": args.temperature,
        }
        if args.pair_maker == "generated":
            recipe |= {
                "questions": args.questions_per_passage,
                "generated_share": args.generated_share,
                "generate_passages": args.generate_passages,
            }
        if args.pair_negatives:
            recipe["negatives"] = args.pair_negatives
        if args.pair_teacher != "none":
            recipe["teacher"] = args.pair_teacher
    if "supervised" in args.stages:
        recipe["supervised_steps"] = args.supervised_steps
    if args.bf16:
        recipe["bf16"] = True
    if args.start_adapter != NONE:
        recipe["start"] = args.start_adapter
        if args.start_share:
            recipe["start_share"] = args.start_share
    if args.start_adapter in SHIPPED:
        # the shipped default changes between releases: a run from another default is another recipe
        recipe["start_digest"] = adapter_digest(SHIPPED[args.start_adapter])[:8]
    return recipe


def recipe_tag(recipe: dict) -> str:
    whitening = {0: "", -1: "-white"}.get(int(recipe["whitening"]), f"-white{recipe['whitening']}")
    tokens = f"-t{recipe['token_lr_scale']:g}" if recipe["token_lr_scale"] != 1 else ""
    weights = (
        "" if is_default_weighting(recipe) else f"-lm{recipe['lm_weight']:g}-bow{recipe['bow_weight']:g}"
    )
    targets = "-idf" if recipe["targets"] == "idf" else ""
    shape = f"-w{recipe['window']}-b{recipe['batch']}"
    supervised = f"-then-sup{recipe['supervised_steps']}" if "supervised_steps" in recipe else ""
    stage_one = f"s{recipe['steps']}-lr{recipe['lr']:g}{tokens}{weights}{targets}{shape}"
    if "contrastive" not in recipe["stages"]:
        return stage_one + whitening + supervised
    contrastive = (
        f"{recipe['pairs']}{recipe['contrastive_steps']}x{recipe['contrastive_batch']}"
        f"-lr{recipe['contrastive_lr']:g}-tau{recipe['temperature']:g}"
    )
    if recipe["pairs"] == "generated":
        drawn = recipe["generate_passages"]
        contrastive += f"-q{recipe['questions']}-gen{recipe['generated_share']:g}" + (
            f"-of{drawn}" if drawn > 0 else ""
        )
    if recipe.get("negatives"):
        contrastive += f"-neg{recipe['negatives']}"
    if "teacher" in recipe:
        contrastive += f"-teacher{recipe['teacher']}"
    start = f"from-{Path(str(recipe['start'])).name}-" if "start" in recipe else ""
    if "start_digest" in recipe:
        start += f"{recipe['start_digest']}-"
    share = f"-share{recipe['start_share']:g}" if "start_share" in recipe else ""
    share += "-bf16" if recipe.get("bf16") else ""
    if "ebae-ebar" not in recipe["stages"]:
        return start + contrastive + supervised + whitening + share
    return f"{start}{stage_one}-then-{contrastive}{supervised}{whitening}{share}"


def is_default_weighting(recipe: dict[str, float | int]) -> bool:
    return (recipe["lm_weight"], recipe["bow_weight"]) == (1, 1)


def describe_recipe(recipe: dict, training: dict) -> str:
    """The recipe in words; a start adapter is named with its digest, as the shipped default changes."""
    dims = int(recipe["whitening"])
    whitening = {0: "no whitening", -1: "whitened"}.get(dims, f"whitened to {dims}")
    parts = []
    if "start" in recipe:
        digest = (training.get("continued_from") or {}).get("digest")
        parts.append(f"from the {recipe['start']} adapter" + (f" {digest[:8]}" if digest else ""))
    if "ebae-ebar" in recipe["stages"]:
        rate = f"lr {recipe['lr']:g}"
        if recipe["token_lr_scale"] != 1:
            rate += f" (special tokens x{recipe['token_lr_scale']:g})"
        if not is_default_weighting(recipe):
            rate += f", loss {recipe['lm_weight']:g} LM + {recipe['bow_weight']:g} BoW"
        if recipe["targets"] == "idf":
            rate += ", IDF-weighted targets"
        parts.append(f"{recipe['steps']} x {recipe['batch']} windows of {recipe['window']}, {rate}")
    if "contrastive" in recipe["stages"]:
        parts.append(
            f"then {recipe['contrastive_steps']} x {recipe['contrastive_batch']} {pairs_in_words(recipe, training)}, "
            f"lr {recipe['contrastive_lr']:g}, τ {recipe['temperature']:g}"
            + (
                f", {recipe['negatives']} {NEGATIVES[recipe.get('teacher', 'none')]}"
                if recipe.get("negatives")
                else ""
            )
        )
    if "supervised_steps" in recipe:
        parts.append(f"then {recipe['supervised_steps']} steps of the default's supervised groups")
    if "start_share" in recipe:
        parts.append(f"{recipe['start_share']:g} of the start adapter kept")
    if recipe.get("bf16"):
        parts.append("bf16 autocast")
    return f"{'; '.join(parts)}, {whitening}"


def pairs_in_words(recipe: dict, training: dict) -> str:
    """The contrastive stage's pairs; generated ones with what the generator kept and what that cost."""
    if recipe["pairs"] != "generated":
        return f"{recipe['pairs']} pairs"
    report = training.get("stages", {}).get("contrastive", {}).get("pairs", {})
    generation, makers = report.get("generation") or {}, report.get("makers") or {}
    kept = ""
    if generation:
        written = (
            f"{generation['written']} questions written at {generation['questions_per_minute']} a minute "
            f"({generation['cpu_minutes']} CPU min)"
            if generation.get("written")
            else "every question read from the cache"
        )
        kept = f": {makers.get('generated', 0)} generated + {makers.get('ict', 0)} ict, {written}"
    return (
        f"generated pairs ({recipe['questions']} questions a passage"
        + (f", for {recipe['generated_share']:g} of the passages" if recipe["generated_share"] != 1 else "")
        + f"{kept})"
    )


NEGATIVES = {
    "none": "BM25 negative(s) a pair",
    "bm25": "negative(s) a pair scored by the BM25 teacher",
    "hybrid": "negative(s) a pair scored by the hybrid teacher (BM25 + the start adapter)",
    "minilm-hybrid": "negative(s) a pair scored by the MiniLM hybrid teacher (BM25 + all-MiniLM-L6-v2)",
}


LATER_STAGES = (
    "negatives",
    "teacher",
    "supervised_steps",
    "questions",
    "generated_share",
    "generate_passages",
)
"""Recipe keys of the stages after EBAE/EBAR, which leave it as it is."""


def reuse_stage_one(checkpoints: Path, name: str, recipe: dict) -> None:
    """Stage 1 copied from the run whose recipe differs in the later stages alone (their negatives, the
    supervised stage, any pair maker but ict's): ``adapt`` checks its record and trains it again if it
    differs after all."""
    base = {key: value for key, value in recipe.items() if key not in LATER_STAGES}
    if "pairs" in base:
        base["pairs"] = "ict"
    stage_one = STAGE_ADAPTER.format("ebae-ebar")
    source = checkpoints.parent / f"adapt-{name}-{recipe_tag(base)}.checkpoints" / stage_one
    target = checkpoints / stage_one
    if base != recipe and source.is_dir() and not target.exists():
        logger.info("Stage 1 taken from %s", source.parent.name)
        shutil.copytree(source, target)


def train(name: str, args: argparse.Namespace) -> dict:
    recipe = recipe_of(args)
    adapter = args.runs / f"adapt-{name}-{recipe_tag(recipe)}"
    # the share only moves the finished adapter: runs of any share train in (and resume from) one place
    trained = {key: value for key, value in recipe.items() if key != "start_share"}
    checkpoints = args.runs / f"adapt-{name}-{recipe_tag(trained)}.checkpoints"
    if not (adapter / LLARA_CONFIG_FILE).is_file():
        if "ebae-ebar" in args.stages:
            reuse_stage_one(checkpoints, name, trained)
        training = AdaptationArguments(
            output_dir=str(checkpoints),
            model=args.model,
            max_steps=args.max_steps,
            learning_rate=args.lr,
            special_tokens_lr_scale=args.special_tokens_lr_scale,
            lm_weight=args.lm_weight,
            bow_weight=args.bow_weight,
            target_weighting=args.target_weighting,
            per_device_train_batch_size=args.batch_size,
            window_tokens=args.window,
            whitening_dims=args.whitening_dims,
            stages=args.stages,
            pair_maker=args.pair_maker,
            questions_per_passage=args.questions_per_passage,
            generated_share=args.generated_share,
            generate_passages=args.generate_passages,
            pair_negatives=args.pair_negatives,
            pair_teacher=args.pair_teacher,
            contrastive_max_steps=args.contrastive_steps,
            contrastive_learning_rate=args.contrastive_lr,
            contrastive_batch_size=args.contrastive_batch_size,
            temperature=args.temperature,
            supervised_max_steps=args.supervised_steps,
            save_steps=10,
            start_adapter=None if args.start_adapter == NONE else args.start_adapter,
            start_share=args.start_share,
            bf16=args.bf16,
        )
        adapt(DATA / name, adapter, training)
    logger.info("Using the adapter in %s", adapter)
    info = read_adapter_info(adapter)
    assert info is not None
    relative = adapter.relative_to(ROOT) if adapter.is_relative_to(ROOT) else adapter
    record = {"adapter": str(relative), **info.training}
    source = read_adapter_info(checkpoints.with_suffix("")) if checkpoints.with_suffix("").is_dir() else None
    if source is not None and source.training.get("cpu_seconds", 0) > record["cpu_seconds"]:
        # moved by its share from checkpoints another run trained: that run's training is its cost
        record["cpu_seconds"] = source.training["cpu_seconds"]
    return record


def unwhitened(adapter: Path) -> Path | None:
    """The adapter without its whitening (links to its files), to measure what the whitening adds."""
    if not (adapter / WHITENING_FILE).is_file():
        return None
    bare = adapter.parent / f"{adapter.name}.unwhitened"
    bare.mkdir(exist_ok=True)
    for item in adapter.iterdir():
        if item.name != WHITENING_FILE and not (bare / item.name).exists():
            (bare / item.name).symlink_to(item.resolve())
    return bare


def measure(
    name: str, adapter: Path, model: str, systems: tuple[str, ...] = SYSTEMS
) -> dict[str, dict[str, float]]:
    config = EvaluationConfig(encoder=EncoderConfig(model=model, adapter=str(adapter)), systems=systems)
    result = evaluate(DATA / name, config)
    return {
        system.name: {k: round(system.metrics[k], 4) for k in ("nDCG@10", "Recall@100")}
        for system in result.systems
    }


def verdict(scores: dict[str, dict[str, float]]) -> dict[str, bool]:
    ndcg = {system: values["nDCG@10"] for system, values in scores.items()}
    met = (
        ndcg["llara"] >= GOAL_BM25_SHARE * ndcg["bm25"],
        ndcg["hybrid"] >= ndcg["bm25"] + GOAL_HYBRID_GAIN,
        "minilm" in ndcg and ndcg["llara"] >= ndcg["minilm"],
        "minilm-hybrid" in ndcg and ndcg["hybrid"] >= ndcg["minilm-hybrid"],
    )
    return dict(zip(GOALS, met))


def markdown(runs: list[dict], model: str) -> str:
    lines = [
        "# Unsupervised adaptation (corpus text only)",
        "",
        f"`python benchmarks/adapt.py`: `llara-rag adapt` of `{model}` on each collection's `corpus.jsonl` alone",
        "(no queries, no qrels), then the evaluation harness on its test queries. One row per recipe tried:",
        "EBAE/EBAR alone (steps x batch of windows, learning rate, window tokens, domain whitening), or EBAE/EBAR",
        "then the label-free contrastive stage (steps x pairs, pair maker, learning rate, temperature). CPU",
        "minutes count the training process's CPU time on a 2-core machine, both stages and any whitening fit",
        "(about 3 minutes: 512 windows encoded twice), on an AVX2 CPU unless the row names another instruction",
        "set (the default recipe took 61 CPU minutes on CACM with AVX2, 45 with AVX512). The hybrid sums BM25's",
        "and the adapted encoder's z-normalised scores at equal weights; rows marked 'reciprocal ranks' were",
        "fused by RRF (k=60) before the harness changed, and their adapters are gone. 'Whitening left out' rows",
        "score the same adapter without its whitening file.",
    ]
    for name in dict.fromkeys(run["collection"] for run in runs):
        tried = [run for run in runs if run["collection"] == name]
        scores = tried[-1]["scores"]
        base = scores["llara-base"]
        lines += [
            "",
            f"### {name}",
            "",
            "| system | nDCG@10 | Recall@100 | training | goals met |",
            "|---|---:|---:|---|---|",
            f"| BM25 | {scores['bm25']['nDCG@10']:.3f} | {scores['bm25']['Recall@100']:.3f} | | |",
        ]
        for peer, label in (
            ("minilm", "all-MiniLM-L6-v2"),
            ("minilm-hybrid", "MiniLM + BM25 hybrid (z-scores)"),
        ):
            if peer in scores:
                lines.append(
                    f"| {label} | {scores[peer]['nDCG@10']:.3f} | {scores[peer]['Recall@100']:.3f} | | |"
                )
        lines.append(f"| unadapted | {base['nDCG@10']:.3f} | {base['Recall@100']:.3f} | | |")
        for run in tried:
            recipe, training = run["recipe"], run["training"]
            cost = (
                f"{describe_recipe(recipe, training)}: {training_epochs(training)}, "
                f"{training['cpu_seconds'] / 60:.0f} CPU min"
                + (f" ({training['cpu']})" if "cpu" in training else "")
            )
            goals = ", ".join(goal for goal, ok in verdict(run["scores"]).items() if ok) or "none"
            adapted, hybrid = run["scores"]["llara"], run["scores"]["hybrid"]
            fusion = FUSIONS[run["fusion"]]
            lines += [
                f"| adapted | {adapted['nDCG@10']:.3f} | {adapted['Recall@100']:.3f} | {cost} | {goals} |",
                f"| hybrid (adapted + BM25, {fusion}) | {hybrid['nDCG@10']:.3f} | {hybrid['Recall@100']:.3f} | | |",
            ]
            if "unwhitened" in run:
                bare, bare_hybrid = run["unwhitened"]["llara"], run["unwhitened"]["hybrid"]
                lines += [
                    f"| adapted, whitening left out | {bare['nDCG@10']:.3f} | {bare['Recall@100']:.3f} | same adapter | |",
                    f"| hybrid (that + BM25, {fusion}) | {bare_hybrid['nDCG@10']:.3f} | {bare_hybrid['Recall@100']:.3f} | | |",
                ]
    lines += ["", f"Goals (issues #16 and #37): {'; '.join(GOALS)}.", ""]
    return "\n".join(lines)


def training_epochs(training: dict) -> str:
    stages = training.get("stages", {"ebae-ebar": training})
    return " + ".join(f"{stage['epochs']:.2f} epoch" for stage in stages.values())


def repo_relative(value: object) -> object:
    """The record with every absolute path of this checkout (or of ../shared) made relative to the repository."""
    if isinstance(value, dict):
        return {key: repo_relative(item) for key, item in value.items()}
    if isinstance(value, list):
        return [repo_relative(item) for item in value]
    if isinstance(value, str) and value.startswith("/") and Path(value).is_relative_to(ROOT.parent):
        return os.path.relpath(value, ROOT)
    return value


def load_runs(path: Path) -> list[dict]:
    """The recorded runs; those from before these fields were recorded ran at 1 LM + 1 BoW with uniform
    targets, fused by RRF."""
    runs = json.loads(path.read_text(encoding="utf-8"))["runs"] if path.is_file() else []
    for run in runs:
        run["recipe"] = {
            "stages": "ebae-ebar",
            "lm_weight": 1.0,
            "bow_weight": 1.0,
            "targets": "uniform",
            **run["recipe"],
        }
        run.setdefault("fusion", "rrf")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="cranfield,cacm")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--max-steps", type=int, default=40, help="EBAE/EBAR steps")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument(
        "--special-tokens-lr-scale", type=float, default=1.0, help="the <s1>..<s16> rows' lr / --lr"
    )
    parser.add_argument("--lm-weight", type=float, default=1.0, help="weight of the LM loss")
    parser.add_argument("--bow-weight", type=float, default=1.0, help="weight of (EBAE + EBAR) / 2")
    parser.add_argument(
        "--target-weighting", choices=("uniform", "idf"), default="uniform", help="how BoW targets count"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument(
        "--whitening-dims",
        type=int,
        default=0,
        help="-1: a quarter of the hidden size (after the contrastive stage it measured worse), 0: none",
    )
    parser.add_argument(
        "--stages",
        default=AdaptationArguments.stages,
        help="as `adapt --stages`: ebae-ebar, contrastive, supervised",
    )
    parser.add_argument(
        "--supervised-steps",
        type=int,
        default=MEASURED_SUPERVISED_STEPS,
        help="steps of the supervised stage (the default's own groups), when --stages has it",
    )
    parser.add_argument("--pair-maker", default="ict", help="ict, crop, next, title or generated")
    generation = ("questions_per_passage", "generated_share", "generate_passages")
    add_options(parser, [option for option in options_of(AdaptationArguments) if option.field in generation])
    parser.add_argument(
        "--pair-negatives",
        type=int,
        default=0,
        help="hard negatives a contrastive pair (0: in-batch), mined as --pair-teacher says",
    )
    parser.add_argument(
        "--pair-teacher",
        choices=get_args(Teacher),
        default=PairConfig.model_fields["teacher"].default,
        help="what picks and scores the hard negatives (as `adapt --pair-teacher`)",
    )
    parser.add_argument("--contrastive-steps", type=int, default=18)
    parser.add_argument("--contrastive-lr", type=float, default=AdaptationArguments.contrastive_learning_rate)
    parser.add_argument("--contrastive-batch-size", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument(
        "--start-adapter",
        default=AdaptationArguments.start_adapter,
        help="adapter the training continues, as `adapt --adapter`: 'default' (the shipped one, or its "
        "unsupervised stage when the supervised stage runs), 'none' (a fresh LoRA) or a folder",
    )
    parser.add_argument(
        "--start-share",
        type=float,
        default=AdaptationArguments.start_share,
        help="share of the start adapter kept in the result (as `adapt --start-share`)",
    )
    parser.add_argument("--bf16", action="store_true", help="train under bf16 autocast (as `adapt --bf16`)")
    parser.add_argument(
        "--unwhitened", action="store_true", help="also measure the adapter with its whitening left out"
    )
    parser.add_argument(
        "--reuse-unadapted",
        action="store_true",
        help="take the unadapted encoder's scores from an earlier run of the collection instead of encoding it",
    )
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="where adapters and checkpoints go")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where adaptation.{json,md} go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the start adapter and share `adapt` resolves from the stages (-1 share, `default` start), recorded as run
    resolved = AdaptationArguments(
        output_dir=str(args.runs),
        model=args.model,
        stages=args.stages,
        start_adapter=args.start_adapter,
        start_share=args.start_share,
    )
    args.stages, args.start_adapter, args.start_share = (
        resolved.stages,
        resolved.start_adapter,
        resolved.start_share,
    )
    path = args.results / "adaptation.json"
    recipe = recipe_of(args)
    for name in args.datasets.split(","):
        started = time.perf_counter()
        training = train(name, args)
        adapter = ROOT / training["adapter"]
        earlier = [run["scores"]["llara-base"] for run in load_runs(path) if run["collection"] == name]
        if args.reuse_unadapted and earlier:
            # The unadapted encoder does not change between recipes: its corpus takes as long to encode as
            # the adapted one's, so its recorded score is reused.
            scores = measure(name, adapter, args.model, tuple(s for s in SYSTEMS if s != "llara-base"))
            scores["llara-base"] = earlier[-1]
        else:
            scores = measure(name, adapter, args.model)
        bare = unwhitened(adapter) if args.unwhitened else None
        extra = {"unwhitened": measure(name, bare, args.model, ("llara", "hybrid"))} if bare else {}
        # read just before writing: recipes are often run side by side, one process per core
        runs = load_runs(path)
        runs = [run for run in runs if (run["collection"], run["recipe"]) != (name, recipe)]
        runs.append(
            {
                "collection": name,
                "recipe": recipe,
                "training": training,
                "scores": scores,
                "goals": verdict(scores),
                "fusion": "z-score",
                **extra,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        args.results.mkdir(parents=True, exist_ok=True)
        runs = [repo_relative(run) for run in runs]
        path.write_text(json.dumps({"runs": runs}, indent=2, default=str), encoding="utf-8")
        (args.results / "adaptation.md").write_text(markdown(runs, args.model), encoding="utf-8")
    print(markdown(runs, args.model))


if __name__ == "__main__":
    main()
