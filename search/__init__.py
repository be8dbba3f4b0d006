"""WHO decides and WHERE it runs: config, algorithms, Ray workers, the driver loop, the store, the CLI."""
