"""The runs folder: the only place that spells run-file names and their records, the state of a
grid (done, running, failed, missing), and results.csv rebuilt from the summaries."""
