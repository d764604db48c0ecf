"""Chains and batches, built on jobs.

Imports jobs and queue.
"""
