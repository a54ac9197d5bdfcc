"""`cifar-ops serve`: one model behind an upload page, a JSON endpoint and a health check."""
