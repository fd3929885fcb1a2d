"""From a request to planned runs: the profiles, each run's configuration, seed and hash, the SAM
backbone weights, and the prepared grid (device, data, preprocessing, provenance) that every
executor runs; everything checked before the first run starts."""
