"""Tools around the trainer: the puzzle visualizer page, its small HTTP server, and the predictions exporter."""
