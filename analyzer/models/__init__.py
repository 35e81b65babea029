"""Performance models: across accelerator types, counts and power caps."""
