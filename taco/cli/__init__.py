"""Entry points (`taco-*` commands): each parses its config or arguments and calls the package."""
