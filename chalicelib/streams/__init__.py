"""Consumers of the tables' DynamoDB streams: each decodes images with its aggregate's item mapping."""
