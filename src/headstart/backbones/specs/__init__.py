"""The built-in backbones, one module per architecture family: its configuration table (which its
network in `..networks` reads too) and its registered specs. Every module here is imported when the
registry is first read, and none imports torch."""
