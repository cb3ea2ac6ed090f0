"""Templates for the learned template-fit baseline from one combo's training split (no simulator, no test set).

snakemake: input.train (results/combos/<combo>/train.fits), output[0] (.npz), params.options
(baseline.learned_templates' learning keys and the seed), params.variants (the combo's variants:
their mask windows are left out of the stack), log[0].
"""

from typing import Any

from lymannet.fileio import provenance
from lymannet.learned_templates import learn_templates, save_learned
from lymannet.runtime import run


def main(train: str, output: str, options: dict[str, Any], variants: dict[str, Any]) -> None:
    learned = learn_templates(train, options, variants)
    save_learned(output, learned, provenance({"options": options, "variants": variants}, {"train": train}))


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        train=snakemake.input.train,
        output=snakemake.output[0],
        options=snakemake.params.options,
        variants=snakemake.params.variants,
    )
