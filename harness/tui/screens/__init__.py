"""Screens of the cutover board, each with its .tcss beside it."""
