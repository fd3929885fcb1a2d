"""What a runs folder shows: Table 1 and the NSD / HD95 tables, the statistics (paired tests,
cluster bootstrap, discriminative power), figures, report.html and the table ``bench run`` prints;
all derived from the run files alone."""
