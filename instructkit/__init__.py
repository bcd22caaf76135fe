"""instructkit's command line: a thin top that asks each package to register its own commands."""
