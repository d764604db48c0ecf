"""Program files: YAML loading, the pydantic schema, diffs between two configs.

Imports nothing from the package but the top-level helpers.
"""
