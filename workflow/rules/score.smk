rule score:
    input:
        unpack(score_training_split),
        prediction="results/predictions/{model}/{combo}/{testset}.fits",
        testset="results/testsets/{testset}.fits",
    output:
        score_json="results/scores/{model}/{combo}/{testset}.json",
        curve_csv="results/scores/{model}/{combo}/{testset}_curve.csv",
        figure=report(
            "results/scores/{model}/{combo}/{testset}.png",
            caption="../report/score.rst",
            category="4. Scores",
            subcategory="{testset}",
        ),
        pe_figure=report(
            "results/scores/{model}/{combo}/{testset}_pe.png",
            caption="../report/pe_curve.rst",
            category="4. Scores",
            subcategory="{testset}",
        ),
        false_positives=report(
            "results/scores/{model}/{combo}/{testset}_false_positives.png",
            caption="../report/false_positives.rst",
            category="4. Scores",
            subcategory="{testset}",
        ),
        calibration=report(
            "results/scores/{model}/{combo}/{testset}_calibration.png",
            caption="../report/score_calibration.rst",
            category="4. Scores",
            subcategory="{testset}",
        ),
    log:
        "logs/score/{model}/{combo}/{testset}.log",
    conda:
        ENV_SCORE
    params:
        options=config["score"],
    script:
        "../scripts/score.py"


rule compare:
    input:
        scores=[
            f"results/scores/{m}/{c}/{t}.json"
            for m, c in RUNS + ENSEMBLE_RUNS + REFINED_RUNS + BASELINE_RUNS
            for t in TESTSETS
        ],
        curves=[
            f"results/scores/{m}/{c}/{t}_curve.csv"
            for m, c in RUNS + ENSEMBLE_RUNS + REFINED_RUNS + BASELINE_RUNS
            for t in TESTSETS
        ],
        models=[f"results/models/{m}/{c}/calibrated.pt" for m, c in RUNS],
    output:
        summary_csv="results/summary.csv",
        summary_md=report("results/summary.md", caption="../report/summary.rst", category="5. Comparison"),
        figures=report(
            expand("results/plots/compare_{testset}.png", testset=TESTSETS),
            caption="../report/compare.rst",
            category="5. Comparison",
        ),
        combos_png=report(
            "results/plots/compare_combos.png", caption="../report/combos.rst", category="5. Comparison"
        ),
    log:
        "logs/compare.log",
    conda:
        ENV_SCORE
    params:
        testsets=TESTSETS,
    script:
        "../scripts/compare.py"
