"""Datasets: BTCV folders (RawData or Decathlon layout) and their checks, the label set, the
built-in synthetic abdomen, finding the data a command uses (``source``) and the cached
preprocessing every harness-trained method shares."""
