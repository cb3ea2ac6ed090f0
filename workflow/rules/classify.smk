# Survey catalogues (config `classify:`): a model run over DESI coadd files.
#
# One `classify` job per batch of about classify.<name>.files_per_job coadds (lymannet.classify
# plan_batches); each writes one catalogue per coadd, mirroring the coadd's path below
# results/classify/<name>/, and a manifest of what became of each file. `classify_merge` merges
# them. A catalogue already made from the same coadd, model and rule is not redone, so adding
# files classifies only the new ones (docs/design.md, "Survey catalogues").


rule classify:
    input:
        unpack(classify_batch_inputs),
    output:
        manifest="results/classify/{catalogue}/batches/{batch}.tsv",
    log:
        "logs/classify/{catalogue}/{batch}.log",
    benchmark:
        "logs/benchmarks/classify/{catalogue}/{batch}.tsv"
    conda:
        ENV_TRAIN
    threads: 2
    resources:
        gpu=1,
        runtime=120,
        mem_mb=4000,
    params:
        root=lambda w: CLASSIFY[w.catalogue].root,
        folder=lambda w: CLASSIFY[w.catalogue].folder,
        options=lambda w: CLASSIFY[w.catalogue].options,
    script:
        "../scripts/classify.py"


rule classify_merge:
    input:
        unpack(classify_merge_inputs),
    output:
        catalogue="results/classify/{catalogue}/catalogue.fits",
        failures="results/classify/{catalogue}/failures.tsv",
        summary_csv="results/classify/{catalogue}/summary.csv",
        summary_md=report(
            "results/classify/{catalogue}/summary.md",
            caption="../report/classify_summary.rst",
            category="6. Survey catalogues",
            subcategory="{catalogue}",
        ),
        summary_png=report(
            "results/classify/{catalogue}/summary.png",
            caption="../report/classify_figure.rst",
            category="6. Survey catalogues",
            subcategory="{catalogue}",
        ),
    log:
        "logs/classify/{catalogue}/merge.log",
    conda:
        ENV_SCORE
    params:
        root=lambda w: CLASSIFY[w.catalogue].root,
        score=config["score"],
    script:
        "../scripts/classify_merge.py"
