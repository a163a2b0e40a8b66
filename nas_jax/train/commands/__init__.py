"""The training subcommands of ``nas-jax``: ``train``, ``eval``, ``bench``."""
