"""Data for the trainer: datasets by name (datasets.py) and device-resident batches
(gpu_loader.py). Importing this package imports nothing heavy; import the modules."""
