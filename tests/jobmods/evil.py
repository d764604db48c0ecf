"""A module no worker lists under import: importing it at all would leave a mark in Redis."""

from tests.jobmods.basic import record

record(value="evil module was imported")


def run() -> None:
    record(value="evil job ran")
