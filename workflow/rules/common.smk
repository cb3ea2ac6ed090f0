import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# The package is installed in the environment; this keeps a plain checkout working too.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from lymannet.config import (  # noqa: E402
    check_config,
    run_pairs,
    slugify,
    used_combos,
    used_variants,
    variant_source_dataset,
    variants_by_slug,
)


configfile: "config/config.yaml"


validate(config, "../schemas/config.schema.yaml")
check_config(config)

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


VARIANT_NAMES = variants_by_slug(config)
RUNS = run_pairs(config)
TESTSETS = list(config["testsets"])


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
    outputs += [
        f"results/plots/simulated_examples_{ds}.png"
        for ds in config["datasets"]
        if simulated(ds)
    ]
    outputs += [
        f"results/plots/resampled_z_{ds}.png" for ds in config["resample_templates"]
    ]
    outputs += [f"results/combos/{combo}/summary.png" for combo in used_combos(config)]
    outputs += [
        f"results/models/{model}/{combo}/learning_curve.png" for model, combo in RUNS
    ]
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
