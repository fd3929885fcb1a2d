"""Where planned runs execute: here, one after another, or as SLURM jobs through submitit (each job
given its one planned run)."""
