"""4MOST quasar pipelines (after the 'Quasar Spectra Analysis' slides, AML 2023).

- :mod:`.simulate`: 4MOST-like quasar spectra with Ly-alpha forest, metal absorbers and DLAs
  (one FITS file per spectrum + the truth list ``FILE Z_QSO N_ABS N_DLA`` + a DLA table);
- :mod:`.io`: truth-list / per-file readers and ingestion into analysis grids;
- :mod:`.models`: dense and GRU redshift regressors, DLA presence and localisation CNNs;
- :mod:`.train`: one deterministic CPU training loop for all of them;
- :mod:`.metrics`: MAPE, ROC/AUC, window merging into a DLA catalogue, matching;
- :mod:`.plots`: the report figures.
"""
