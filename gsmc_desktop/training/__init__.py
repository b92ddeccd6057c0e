"""The Training tab: configure, run, watch and stop a GSMC/EAC/CE training run."""
