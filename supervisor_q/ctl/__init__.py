"""The control socket: one JSON request and one JSON response per connection.

A transport that knows no command's meaning; imports nothing from the package but
the top-level helpers. The master serves it, the CLI is its client.
"""
