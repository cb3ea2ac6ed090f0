# Visual-inspection samples of survey catalogues (config `classify.<name>.vi_sample`).
#
# `vi_sample` draws classify.<name>.vi_sample.n objects of the merged catalogue in strata of PROB
# (CONFIDENCE for uncalibrated models), favouring the strata around the working point, and copies
# their spectra from the source coadds into one DESI coadd for the inspectors; vi_sample.csv gives
# each object's stratum, inclusion probability and weight (lymannet.visample). Not in the default
# targets: ask for results/classify/<name>/vi_sample/coadd-vi.fits.


rule vi_sample:
    input:
        catalogue="results/classify/{catalogue}/catalogue.fits",
    output:
        coadd="results/classify/{catalogue}/vi_sample/coadd-vi.fits",
        table="results/classify/{catalogue}/vi_sample/vi_sample.csv",
    log:
        "logs/classify/{catalogue}/vi_sample.log",
    conda:
        ENV_SCORE
    params:
        coadd_root=lambda w: CLASSIFY[w.catalogue].root,
        options=lambda w: config["classify"][w.catalogue].get("vi_sample") or {},
    script:
        "../scripts/vi_sample.py"
