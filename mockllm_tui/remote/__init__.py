"""The attached panel's side of the network: a mirror of a running server's store, fed by its event
stream, whose commands go to the server's admin API (`mockllm-tui --attach URL`). No Textual here."""
