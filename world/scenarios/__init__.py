"""The embedded scenarios (TOML): ``pingpong`` (the default), ``attack`` and ``ping``; read with importlib.resources."""
