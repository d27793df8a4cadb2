"""Reports generated from measured results (never typed by hand)."""
