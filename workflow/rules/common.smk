import re
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# The package is installed in the environment; this keeps a plain checkout working too.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from lymannet.config import (  # noqa: E402
    base_model,
    check_config,
    ensemble_members,
    ensemble_runs,
    expand_combos,
    refined_runs,
    run_pairs,
    slugify,
    used_combos,
    variant_source_dataset,
    variants_by_slug,
)
from lymannet.plan import (  # noqa: E402
    SELECTED_MODEL,
    FourmostPlan,
    check_experiments,
    classify_plan,
    experiment_leakage_inputs,
    experiment_outputs,
    experiment_run_inputs,
    experiment_search_inputs,
    experiment_seeds_inputs,
    experiment_testsets,
    experiments,
    experiments_of_kind,
    gallery_inputs,
)
from lymannet.holdout import prior_draws  # noqa: E402
from lymannet.runtime import pin_cpu_isa  # noqa: E402
from lymannet.search import (  # noqa: E402
    base_best_spec,
    best_spec_path,
    check_tune_config,
    searched_models,
    searches,
)


configfile: "config/config.yaml"


validate(config, "../schemas/config.schema.yaml")
expand_combos(config)
check_config(config)
check_tune_config(config)
check_experiments(config)
# Jobs inherit this process's environment (local jobs and sbatch's --export=ALL alike).
pin_cpu_isa(config["cpu_isa"])

ENV_DATA = "../../envs/data.yaml"
ENV_TRAIN = "../../envs/train.yaml"
ENV_SCORE = "../../envs/score.yaml"
NAME = r"[A-Za-z0-9_.\-]+"


wildcard_constraints:
    dataset=NAME,
    testset=NAME,
    variant=NAME,
    combo=NAME,
    model=NAME,
    search=NAME,
    worker=r"\d+",
    catalogue=NAME,
    batch=r"b[0-9a-f]{10}",


VARIANT_NAMES = variants_by_slug(config)
# (model, combo) of every trained run; a run with `seeds: n` gives n, its seeds' model-name aliases
# <model>.seed<k> (seed 0 is <model> itself: lymannet.config.member_name).
RUNS = run_pairs(config)
# Ensembles of a run's seeds (`ensemble: true`): prediction catalogues made from the members'
# (rule predict_ensemble), scored like any run. ENSEMBLES also holds the experiments' ensembles.
ENSEMBLE_RUNS = ensemble_runs(config)
ENSEMBLES = ensemble_members(config)
# Runs with `refine: true`: their catalogues with redshifts refined by learned templates (rule
# predict_refined), the model name <model>.refined, scored like any run.
REFINED_RUNS = refined_runs(config)
# Test sets of the summary and comparison figures; `in_summary: false` ones (an experiment's own)
# are scored only where an experiment asks.
TESTSETS = [name for name, spec in config["testsets"].items() if spec.get("in_summary", True)]
EXPERIMENTS = experiments(config)
SEARCHES = searches(config)
# Survey catalogues: coadd globs are expanded once, here; files grouped into batch jobs.
CLASSIFY = classify_plan(config)


def simulated(dataset):
    return "simulate" in config["datasets"][dataset]


def all_outputs():
    outputs = [
        "results/summary.csv",
        "results/summary.md",
        "results/checks/leakage.json",
        "results/plots/compare_combos.png",
    ]
    outputs += [f"results/plots/compare_{test}.png" for test in TESTSETS]
    outputs += [f"results/plots/simulated_examples_{ds}.png" for ds in config["datasets"] if simulated(ds)]
    outputs += [f"results/plots/resampled_z_{ds}.png" for ds in config["resample_templates"]]
    outputs += [f"results/combos/{combo}/summary.png" for combo in used_combos(config)]
    outputs += [f"results/models/{model}/{combo}/learning_curve.png" for model, combo in RUNS]
    tune_files = ("best_model.yaml", "best_params.md", "history.png", "importance.png")
    outputs += [f"results/tune/{s}/{name}" for s in SEARCHES for name in tune_files]
    return outputs


# Input functions of the rules, by stage.


def ingest_inputs(wildcards):
    spec = config["datasets"][wildcards.dataset]
    if "simulate" in spec:
        folder = f"results/simulated/{wildcards.dataset}"
        return {"coadds": [f"{folder}/coadd.fits"], "truth": f"{folder}/truth.fits"}
    inputs = {"coadds": spec["files"]["coadds"]}
    if "truth" in spec["files"]:
        inputs["truth"] = spec["files"]["truth"]
    return inputs


def testset_holdouts(wildcards):
    members = config["testsets"][wildcards.testset]["members"]
    return {m["dataset"]: f"results/holdout/{m['dataset']}.fits" for m in members}


def variant_source(wildcards):
    spec = config["variants"][VARIANT_NAMES[wildcards.variant]]
    dataset, is_resampled = variant_source_dataset(spec["source"])
    folder = "resampled" if is_resampled else "pool"
    return f"results/{folder}/{dataset}.fits"


def combo_members(wildcards):
    members = config["combos"][wildcards.combo]["members"]
    return {slugify(name): f"results/variants/{slugify(name)}.fits" for name in members}


def model_spec(model):
    """The config spec of a model wildcard: a seed's alias <model>.seed<k> has its model's."""
    return config["models"][base_model(model, config["models"])[0]]


def training_spec(model):
    """A model's spec as training sees it: without its working point, which only `calibrate`
    reads (a new working point must not retrain the network)."""
    return {k: v for k, v in model_spec(model).items() if k != "working_point"}


def working_point(model):
    """The model's own working point, else calibration.working_point."""
    return model_spec(model).get("working_point", config["calibration"]["working_point"])


def searched_model_spec(wildcards):
    """The best spec of the search a `{from_search: ...}` model comes from (nothing otherwise):
    train reruns when the search's result changes."""
    search = searched_models(config).get(base_model(wildcards.model, config["models"])[0])
    return {"best_spec": best_spec_path(search)} if search else {}


def transfer_source(wildcards):
    """The model a `train.transfer.from` starts from (a Keras .h5 or a model.pt, possibly another
    run's results/models/<model>/<combo>/model.pt): train waits for it and reruns when it changes.
    """
    spec = model_spec(wildcards.model)
    transfer = (spec.get("train") or {}).get("transfer") or {}
    return {"transfer_from": transfer["from"]} if transfer.get("from") else {}


def tune_combo(wildcards):
    combo = SEARCHES[wildcards.search]["combo"]
    return {"train": f"results/combos/{combo}/train.fits", "val": f"results/combos/{combo}/val.fits"}


def score_training_split(wildcards):
    """The training split whose target N(z) the chance level's random guess draws its redshifts
    from (lymannet.metrics); none for the oracle template fit, which trains on nothing (its chance
    level takes the test set's own N(z)); the learned-template fit learns from its combo's split.
    """
    if (wildcards.model, wildcards.combo) == (TEMPLATE_FIT["name"], TEMPLATE_FIT["combo"]):
        return {}
    return {"train": f"results/combos/{wildcards.combo}/train.fits"}


def ensemble_member_predictions(wildcards):
    """The members' prediction catalogues of an ensemble on one test set, in seed order."""
    members = ENSEMBLES[(f"{wildcards.model}.ensemble", wildcards.combo)]
    return [f"results/predictions/{m}/{c}/{wildcards.testset}.fits" for m, c in members]


def ensemble_seeds(wildcards):
    members = ENSEMBLES[(f"{wildcards.model}.ensemble", wildcards.combo)]
    return [base_model(m, config["models"])[1] for m, _ in members]


def ensembled_models():
    """Wildcard constraint of predict_ensemble's {model}: the models that have an ensemble."""
    names = sorted({base_model(e, config["models"])[0] for e, _ in ENSEMBLES})
    return "|".join(re.escape(name) for name in names) or "(?!)"


def refined_models():
    """Wildcard constraint of predict_refined's {model}: the runs' models that are refined."""
    names = sorted({model.removesuffix(".refined") for model, _ in REFINED_RUNS})
    return "|".join(re.escape(name) for name in names) or "(?!)"


def tune_base_best_spec(wildcards):
    """A chained search's starting point: the previous search's best spec (nothing otherwise)."""
    path = base_best_spec(config, wildcards.search)
    return {"base_best_spec": path} if path else {}


def tune_worker_markers(wildcards):
    workers = SEARCHES[wildcards.search]["workers"]
    return [f"results/tune/{wildcards.search}/worker_{i}.done" for i in range(workers)]


def classify_outputs():
    """Targets of the `all` rule: every survey catalogue's merged file and summary."""
    names = (
        "catalogue.fits",
        "failures.tsv",
        "summary.md",
        "summary.png",
        "vi_sample/coadd-vi.fits",
        "vi_sample/vi_sample.csv",
    )
    return [f"{jobs.folder}/{name}" for jobs in CLASSIFY.values() for name in names]


def classify_batch_inputs(wildcards):
    jobs = CLASSIFY[wildcards.catalogue]
    return {"model": jobs.model, "coadds": jobs.batches[wildcards.batch]}


def classify_merge_inputs(wildcards):
    jobs = CLASSIFY[wildcards.catalogue]
    inputs = {"manifests": [f"{jobs.folder}/batches/{b}.tsv" for b in jobs.batches]}
    if jobs.truth:
        inputs["truth"] = jobs.truth
    return inputs


# 4MOST quasar pipelines (workflow/rules/fourmost.smk), planned by lymannet.plan.FourmostPlan.

config.setdefault("fourmost", {})
validate(config["fourmost"], "../schemas/fourmost.schema.yaml")
FOURMOST = config["fourmost"]
FOURMOST_PLAN = FourmostPlan(FOURMOST)
