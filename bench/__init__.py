"""The harness, one package per stage, data flowing one way: ``data`` (datasets, the synthetic
abdomen, preprocessing) -> ``plan`` (profiles, the planned runs and their hashes) -> ``pipelines``
(what turns a planned run into predictions: the harness's training and sliding-window inference,
nnU-Net v2's own pipeline, external predictions) -> ``evaluation`` (back to the label grid,
metrics) -> ``runs`` (the run-folder schema, grid state, results) -> ``reporting`` (tables,
statistics, figures, HTML). ``executors`` run planned runs here or on SLURM, ``costs`` measures
parameters, GMACs, time and memory, and ``cli`` is the ``bench`` command. The modules at this level
are shared by all of them: errors, atomic file writes, terminal output, devices, torchrun ranks and
provenance."""
