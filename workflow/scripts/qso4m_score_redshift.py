"""Snakemake `qso4m_score_redshift`: a redshift regressor on the test split -> predictions, metrics, plot."""


import pandas as pd

from lymannet.fileio import write_json_atomic, atomic_path
from lymannet.fourmost import plots
from lymannet.fourmost.io import read_ingested
from lymannet.fourmost.metrics import redshift_metrics
from lymannet.fourmost.train import load_model_file, predict_redshift
from lymannet.runtime import run


def main(ingested: str, model: str, predictions: str, metrics: str, figure: str, catastrophic_dz: float) -> None:
    data = read_ingested(ingested, parts=("Z",))
    network, payload = load_model_file(model)
    rows = data.rows("test")
    z_true = data.sightlines["Z_QSO"].to_numpy()[rows]
    z_pred = predict_redshift(network, payload["info"], data, rows, payload["kind"], payload["spec"])
    table = pd.DataFrame({"FILE": data.sightlines["FILE"].to_numpy()[rows], "Z_TRUE": z_true, "Z_PRED": z_pred,
                          "SNR": data.sightlines["SNR"].to_numpy()[rows]})
    with atomic_path(predictions) as tmp:
        table.to_csv(tmp, index=False)
    result = redshift_metrics(z_pred, z_true, catastrophic_dz)
    result.update({"model": payload["kind"], "parameters": payload["parameters"], "train_seconds": payload["train_seconds"],
                   "epochs": len(payload["history"]["epoch"]), "n_train": payload["info"].get("n_train")})
    write_json_atomic(metrics, result)
    plots.redshift_figure(figure, payload["kind"], z_true, z_pred, catastrophic_dz)


if "snakemake" in globals():
    run(main, snakemake.log[0], ingested=snakemake.input.ingested, model=snakemake.input.model,  # noqa: F821
        predictions=snakemake.output.predictions, metrics=snakemake.output.metrics,  # noqa: F821
        figure=snakemake.output.figure, catastrophic_dz=snakemake.params.catastrophic_dz)  # noqa: F821
