"""The marketplace's Python client and command-line client: not part of the Lambda package."""
