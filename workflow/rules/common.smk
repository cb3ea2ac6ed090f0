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
