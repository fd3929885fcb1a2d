"""Where planned runs execute: here, one after another, or as SLURM jobs through submitit; and
``run_benchmark``, the whole of ``bench run`` from request to report."""
