"""Outputs derived from records alone: tables, plots, the HTML report and the atlas."""
