"""One run's lifecycle: resolve, create its folder, train with progress and checkpoints, record."""
