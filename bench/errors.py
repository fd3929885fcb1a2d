"""Errors that are the user's to fix: the CLI prints their message as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (files, shapes, labels, names, options). The message names the offending thing."""


class DataError(UserError):
    """A dataset file is missing, unreadable or inconsistent with its partner."""


class RunsFailed(Exception):
    """Some runs of a grid failed (their reasons are recorded); the rest finished. Exit code 1, not 2."""
