"""Subcommands of ``cloud-hub`` (see ``cloud_hub.cli.SUBCOMMANDS``)."""
