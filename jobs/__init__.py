"""Container entrypoint(s) of the training image and the example configs (jobs/configs)."""
