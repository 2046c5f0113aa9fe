"""The numbers of a run and their report: ratios and targets, saved history, markdown and plot."""
