"""Project tooling outside the `taco` package: what builds the docs (`make ui-shots`)."""
