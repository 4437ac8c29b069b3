"""convt.frontends."""
