"""Snakemake `fourmost_score_redshift`: a redshift regressor on the test split -> predictions, metrics, plot."""

from lymannet.fileio import atomic_path, write_json_atomic
from lymannet.fourmost import plots
from lymannet.fourmost.ingest import read_ingested
from lymannet.fourmost.score import score_redshift
from lymannet.fourmost.tasks import redshift_parts
from lymannet.modelfile import load_fourmost_model_file as load_model_file
from lymannet.runtime import run


def main(
    ingested: str, model: str, predictions: str, metrics: str, figure: str, catastrophic_dz: float
) -> None:
    network, payload = load_model_file(model)
    data = read_ingested(ingested, parts=redshift_parts(payload["kind"]))
    table, result = score_redshift(data, network, payload, catastrophic_dz)
    with atomic_path(predictions) as tmp:
        table.to_csv(tmp, index=False)
    write_json_atomic(metrics, result)
    plots.redshift_figure(
        figure, payload["kind"], table["Z_TRUE"].to_numpy(), table["Z_PRED"].to_numpy(), catastrophic_dz
    )


if "snakemake" in globals():
    run(
        main,
        snakemake.log[0],
        ingested=snakemake.input.ingested,
        model=snakemake.input.model,  # noqa: F821
        predictions=snakemake.output.predictions,
        metrics=snakemake.output.metrics,  # noqa: F821
        figure=snakemake.output.figure,
        catastrophic_dz=snakemake.params.catastrophic_dz,
    )  # noqa: F821
