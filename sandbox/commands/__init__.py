"""One module per ``nic-sandbox`` subcommand: its parser and what it runs."""
