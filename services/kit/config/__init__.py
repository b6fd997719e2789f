"""Settings: defaults in config/mesh.toml, a config file, the environment."""
