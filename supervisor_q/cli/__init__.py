"""The `supervisor-q` command: one module per command family.

The top layer: may import anything; nothing imports it but __main__.
"""
