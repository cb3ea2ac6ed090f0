"""Fail the workflow if any copy of a test object reached a training or validation set."""

from lymannet.holdout import check_no_leakage
from lymannet.fileio import write_json_atomic
from lymannet.runtime import run


def main(training: list[str], testsets: list[str], output: str) -> None:
    report = check_no_leakage(training, testsets)
    write_json_atomic(output, {"training_sets": training, "test_sets": testsets, "result": report})


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        training=list(snakemake.input.train) + list(snakemake.input.val),
        testsets=list(snakemake.input.testsets),
        output=snakemake.output[0],
    )
