"""What methods cost and whether a machine can run them: parameters and GMACs (fvcore), training
step and sliding-window time and memory, and ``bench doctor``'s preflight checks."""
