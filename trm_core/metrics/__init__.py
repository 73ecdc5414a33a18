"""A run's logged metrics beyond the loss: series for charts (series.py), files for other tools
(export.py: CSV, PNG, SVG; tensorboard.py: TensorBoard event files)."""
