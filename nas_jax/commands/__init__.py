"""The ``nas-jax`` subcommands, one module each (``nas_jax.cli`` dispatches): ``train``,
``eval``, ``fuse``, ``bench``, ``repnas``, ``prune`` (graph, train, search, export),
``parity``, ``import`` (``import_.py``) and ``export``. A command parses its arguments,
calls the library and prints; it is the top layer and may import any other."""
