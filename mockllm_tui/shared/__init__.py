"""The Redis state backend (`--state redis://…`): what several processes and machines share."""
