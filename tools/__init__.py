"""convt.tools."""
