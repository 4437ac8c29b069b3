"""convt.compiler."""
