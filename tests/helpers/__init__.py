"""What the tests share besides fixtures: table and rig builders, the read-only folder, the SLURM
cluster, marker centroids, the old triangulation, and the scripts run in subprocesses (TensorFlow,
DDP). Imported as ``tests.helpers.x``; nothing here is collected as a test."""
